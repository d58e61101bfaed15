# Sourced by the rigs: what every one of them needs the same way.

# apt_install PKG...: install what is missing, updating the package lists once if the
# first try fails (a fresh machine's lists may be empty or stale). The dpkg lock is
# waited for, not failed on, as another install may be finishing.
apt_install() {
    local p missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    local apt="apt-get -o DPkg::Lock::Timeout=900 -y -q --no-install-recommends"
    export DEBIAN_FRONTEND=noninteractive
    $apt install $missing >/dev/null \
        || { $apt update >/dev/null && $apt install $missing >/dev/null; }
}

port_busy() {  # PORT: something listens on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {  # START: print the first port from START that nobody listens on
    local p=$1
    while port_busy "$p"; do p=$((p + 1)); done
    echo "$p"
}

take_port() {  # VAR START: free_port into VAR, skipping the ports earlier calls took
    local p=$2
    while port_busy "$p" || [[ " ${TAKEN_PORTS:-} " == *" $p "* ]]; do p=$((p + 1)); done
    TAKEN_PORTS="${TAKEN_PORTS:-} $p"
    printf -v "$1" %s "$p"
}

wait_for() {  # SECONDS COMMAND...: retry COMMAND (quietly) until it succeeds or time is up
    local t=$1; shift
    local end=$((SECONDS + t))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.3
    done
}
