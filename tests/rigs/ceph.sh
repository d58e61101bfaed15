#!/bin/bash
# Test rig: a real single-node Ceph (mon + mgr + one bluestore-on-file OSD) on
# 127.0.0.1 with cephx, all state under one directory.
#
#   tests/rigs/ceph.sh install      apt packages (rbd-fuse, and rbd-nbd for the guest's datapath
#                                   tests) + rados/rbd bindings for the tools' python3
#   tests/rigs/ceph.sh up DIR       start the cluster in DIR (must not exist or be empty)
#   tests/rigs/ceph.sh env DIR      print the exports tests need (eval "$(... env DIR)")
#   tests/rigs/ceph.sh down DIR     stop the daemons (pid files, guarded) and rm -rf DIR
#   tests/rigs/ceph.sh pybind [PY]  only the bindings step of install, for interpreter PY
#
# Knobs (environment): CEPH_MON_PORT (default: first free from 3300), CEPH_MON_V1_PORT
# (default: first free from 6789; 0 = msgr2 only),
# CEPH_MGR (1; 0 = no mgr: I/O works, usage stats are 0), CEPH_OBJECTSTORE (bluestore|memstore),
# CEPH_WAIT_SCALE (1; multiplies how long up waits for the daemons: 10 in the TCG guest).
#
# Pools made by `up`: `rbd` (replicated, size 1, rbd application) and `rbd-data`
# (a second replicated pool used to exercise the data_pool option; an erasure-coded
# data pool needs k+m OSDs, see docs/ceph.md). Users: client.admin and client.srkit
# (caps "profile rbd" on both pools, what the driver needs, including blocklisting).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

die() { echo "ceph.sh: $*" >&2; exit 1; }


# Make Debian's rados/rbd extension modules importable by another CPython of the same
# ABI (the tools' pyenv python3), without leaking the rest of dist-packages: a .pth in
# that interpreter's site-packages points at a directory holding only two symlinks.
pybind() {
    local py="${1:-python3}"
    "$py" -c 'import rados, rbd' 2>/dev/null && return 0
    local purelib soabi dir
    purelib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    soabi=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))')
    dir="$purelib/srkit-ceph-pybind"
    mkdir -p "$dir"
    local found=0
    for m in rados rbd; do
        for f in /usr/lib/python3/dist-packages/$m.$soabi.so /usr/lib/python3/dist-packages/$m.cpython-*.so; do
            if [ -e "$f" ]; then ln -sf "$f" "$dir/$m.$soabi.so"; found=$((found+1)); break; fi
        done
    done
    [ "$found" = 2 ] || die "python3-rados/python3-rbd extension modules not found"
    echo "$dir" > "$purelib/srkit-ceph-pybind.pth"
    "$py" -c 'import rados, rbd' || die "$py cannot import rados/rbd (ABI mismatch? needs CPython $soabi)"
}

write_conf() {
    local D=$1 fsid=$2 monaddr=$3 ec_plugins=""
    # Debian's erasure-code plugins use SSSE3 without asking the CPU: on a CPU without
    # it (the guest of tests/rigs/guest.sh: qemu64) every daemon dies of SIGILL at the
    # plugins' preload. The rig's pools are replicated, so none is needed there.
    grep -qw ssse3 /proc/cpuinfo || ec_plugins="osd erasure code plugins ="
    cat > "$D/ceph.conf" <<CONF
[global]
fsid = $fsid
mon initial members = a
mon host = $monaddr
public network = 127.0.0.1/32
cluster network = 127.0.0.1/32
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mgr stats period = 1
mon mgr digest period = 1
keyring = $D/\$cluster.\$name.keyring
$ec_plugins
run dir = $D/run
admin socket = $D/run/\$cluster-\$name.asok
pid file = $D/run/\$cluster-\$name.pid
log file = $D/log/\$cluster-\$name.log
mon cluster log file = $D/log/\$cluster.log
crash dir = $D/crash
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id

[client]
# many short-lived clients (one per driver call): keep their admin sockets out of the way
admin socket =
log file = $D/log/client.log

[mon]
keyring = $D/mon/\$cluster-\$id/keyring
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.01
mgr initial modules = iostat
admin socket = $D/run/\$cluster-\$name.asok
log file = $D/log/\$cluster-\$name.log

[osd]
keyring = $D/osd/\$cluster-\$id/keyring
osd objectstore = ${CEPH_OBJECTSTORE:-bluestore}
memstore device bytes = 4294967296
bluestore block create = true
bluestore block size = 10737418240
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mount = false
bdev enable discard = false
osd memory target = 1073741824
osd crush update on start = true
admin socket = $D/run/\$cluster-\$name.asok
log file = $D/log/\$cluster-\$name.log

[mgr]
keyring = $D/mgr/\$cluster-\$id/keyring
mgr data = $D/mgr/\$cluster-\$id
admin socket = $D/run/\$cluster-\$name.asok
log file = $D/log/\$cluster-\$name.log
CONF
}

up() {
    local D=${1:?usage: up DIR}
    mkdir -p "$D"; D=$(cd "$D" && pwd)
    [ ! -e "$D/ceph.conf" ] || die "$D/ceph.conf exists: run 'down $D' first"
    # explicit ports must be free; default ones move up when another cluster runs here
    local mon_port=${CEPH_MON_PORT:-} v1=${CEPH_MON_V1_PORT:-}
    if [ -n "$mon_port" ]; then
        port_busy "$mon_port" && die "port $mon_port is in use"
    else
        mon_port=$(free_port 3300)
    fi
    if [ -z "$v1" ]; then
        v1=$(free_port 6789)
    elif [ "$v1" != 0 ]; then
        port_busy "$v1" && die "port $v1 is in use"
    fi
    local monaddr="[v2:127.0.0.1:$mon_port]"
    if [ "$v1" != 0 ]; then
        monaddr="[v2:127.0.0.1:$mon_port,v1:127.0.0.1:$v1]"
    fi
    local t0=$SECONDS
    trap 'echo "ceph.sh up failed; log tails:" >&2; tail -n 20 "$D"/log/*.log >&2 2>/dev/null || true' ERR
    mkdir -p "$D"/{mon,osd/ceph-0,mgr/ceph-x,run,log,crash}
    local fsid; fsid=$(uuidgen)
    write_conf "$D" "$fsid" "$monaddr"
    local C="$D/ceph.conf"
    ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$D/ceph.client.admin.keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$D/mon.keyring" --import-keyring "$D/ceph.client.admin.keyring" >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "$monaddr" "$D/monmap" >/dev/null
    ceph-mon -c "$C" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
    ceph-mon -c "$C" -i a
    # the ceph CLI is python: ~1 s here, far more in the TCG guest (CEPH_WAIT_SCALE=10)
    local w=${CEPH_WAIT_SCALE:-1}
    wait_for $((30 * w)) timeout $((5 * w)) ceph -c "$C" mon stat || die "mon did not come up"
    if [ "${CEPH_MGR:-1}" != 0 ] && command -v ceph-mgr >/dev/null; then
        ceph -c "$C" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
            -o "$D/mgr/ceph-x/keyring"
        ceph -c "$C" config set mgr mgr/devicehealth/enable_monitoring false --force
        ceph-mgr -c "$C" -i x
    fi
    local osd_uuid secret
    osd_uuid=$(uuidgen); secret=$(ceph-authtool --gen-print-key)
    echo "{\"cephx_secret\": \"$secret\"}" | ceph -c "$C" osd new "$osd_uuid" -i - >/dev/null
    ceph-authtool --create-keyring "$D/osd/ceph-0/keyring" --name osd.0 --add-key "$secret" >/dev/null
    ceph-osd -c "$C" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$D/log/ceph-osd.0.mkfs.log" 2>&1
    ceph-osd -c "$C" -i 0 2>"$D/log/ceph-osd.0.stderr"
    for pool in rbd rbd-data; do
        ceph -c "$C" osd pool create "$pool" 8 8 replicated >/dev/null 2>&1
        rbd -c "$C" pool init "$pool"
    done
    wait_for $((60 * w)) timeout $((10 * w)) rados -c "$C" -p rbd put srkit-probe /etc/hostname \
        || die "pool rbd not writable"
    rados -c "$C" -p rbd rm srkit-probe
    # the driver's own user: least privilege an XCP-ng pool would be given
    ceph -c "$C" auth get-or-create client.srkit mon 'profile rbd' mgr 'profile rbd' \
        osd 'profile rbd pool=rbd, profile rbd pool=rbd-data' -o "$D/ceph.client.srkit.keyring"
    env_ "$D" > "$D/env.sh"
    trap - ERR
    echo "ceph up in $D after $((SECONDS - t0)) s"
}

env_() {
    local D=${1:?usage: env DIR}
    D=$(cd "$D" && pwd)
    [ -e "$D/ceph.conf" ] || die "no cluster in $D"
    local key
    key=$(sed -n 's/^[[:space:]]*key = //p' "$D/ceph.client.srkit.keyring" | head -n1)
    printf "export %s='%s'\n" \
        CEPH_CONF "$D/ceph.conf" \
        SRKIT_CEPH_DIR "$D" \
        SRKIT_CEPH_CONF "$D/ceph.conf" \
        SRKIT_CEPH_MONITORS "$(sed -n 's/^mon host = //p' "$D/ceph.conf")" \
        SRKIT_CEPH_USER srkit \
        SRKIT_CEPH_KEY "$key" \
        SRKIT_CEPH_KEYRING "$D/ceph.client.srkit.keyring" \
        SRKIT_CEPH_POOL rbd \
        SRKIT_CEPH_DATA_POOL rbd-data
}

# signal a daemon only when its cmdline names this cluster's conf (recycled pids, other clusters)
stop_daemon() {
    local D=$1 pidfile=$2 pid i
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$D/ceph.conf" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        [ -e "/proc/$pid" ] || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

down() {
    local D=${1:?usage: down DIR}
    [ -d "$D" ] || return 0
    D=$(cd "$D" && pwd)
    case "$D" in /|/usr|/usr/*|/etc|/etc/*|/home|/root|/var|/bin|/sbin|/lib*) die "refusing to remove $D";; esac
    # fuse mounts and loop devices the driver may have left behind in tests
    if [ -r /proc/mounts ]; then
        awk -v d="$D" 'index($2, d) == 1 {print $2}' /proc/mounts | while read -r m; do
            fusermount -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done
    fi
    local kind
    # a radosgw (tests/rigs/rgw.sh) on this cluster goes first, while the mon still answers
    for kind in client.rgw mgr osd mon; do
        for pf in "$D"/run/ceph-"$kind".*.pid; do
            [ -e "$pf" ] && stop_daemon "$D" "$pf"
        done
    done
    [ "${2:-}" = --keep ] || rm -rf "$D"
}

cmd=${1:-}; shift || true
case "$cmd" in
    install) apt_install ceph-mon ceph-osd ceph-mgr ceph-common python3-rados python3-rbd rbd-fuse rbd-nbd; pybind "${1:-python3}";;
    pybind) pybind "${1:-python3}";;
    up) up "$@";;
    down) down "$@";;
    env) env_ "$@";;
    *) die "usage: $0 install|pybind [PY]|up DIR|env DIR|down DIR [--keep]";;
esac
