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
