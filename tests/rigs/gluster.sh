#!/bin/bash
# Test rig: a private glusterd on 127.0.0.1 with two volumes, all state under one directory.
#
#   tests/rigs/gluster.sh install [PY]  apt packages (glusterd, FUSE client, attr, xfsprogs)
#   tests/rigs/gluster.sh up DIR        start glusterd and the volumes in DIR
#   tests/rigs/gluster.sh env DIR       print the exports tests need (eval "$(... env DIR)")
#   tests/rigs/gluster.sh down DIR      unmount, stop the volumes, kill our daemons, rm -rf DIR
#
# Volumes made by `up`:
#   srkit-rep  replica 2, two bricks on the root filesystem (backup-server and brick-down
#              tests; client quorum off so one brick is enough, ping timeout 5 s)
#   srkit-xfs  one brick on XFS with reflink=1 on a loop device (server-side copy)
#
# glusterd must listen on 24007 (bricks fetch their volfile there), so one rig per machine.
# The brick host must not be a loopback literal: the machine's hostname, which must
# resolve to 127.0.0.1 (added to /etc/hosts when it does not).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

die() { echo "gluster.sh: $*" >&2; exit 1; }


cli() {  # gluster CLI against this rig's glusterd
    local D=$1; shift
    gluster --mode=script --glusterd-sock="$D/run/glusterd.socket" --log-file="$D/log/cli.log" "$@"
}

bricks_online() {  # D VOL N : N bricks of VOL report status 1
    local n
    n=$(cli "$1" volume status "$2" --xml 2>/dev/null | grep -c '<status>1</status>' || true)
    [ "${n:-0}" -ge "$3" ]
}

up() {
    local D=${1:?usage: up DIR}
    mkdir -p "$D"; D=$(cd "$D" && pwd)
    [ ! -e "$D/glusterd.vol" ] || die "$D/glusterd.vol exists: run 'down $D' first"
    (exec 3<>/dev/tcp/127.0.0.1/24007) 2>/dev/null && die "port 24007 is in use (another glusterd?)"
    local H; H=$(hostname)
    getent hosts "$H" | grep -q '^127\.' || echo "127.0.0.1 $H" >> /etc/hosts
    local t0=$SECONDS
    trap 'echo "gluster.sh up failed; log tails:" >&2; tail -n 20 "$D"/log/*.log >&2 2>/dev/null || true' ERR
    mkdir -p "$D"/{lib,run,log,bricks,xfs}
    cat > "$D/glusterd.vol" <<EOF
volume management
    type mgmt/glusterd
    option working-directory $D/lib
    option run-directory $D/run
    option glusterd-sockfile $D/run/glusterd.socket
    option transport-type socket
    option transport.address-family inet
    option transport.socket.bind-address 127.0.0.1
    option transport.socket.listen-port 24007
    option ping-timeout 0
    option event-threads 1
    option base-port 49152
    option max-port 49251
end-volume
EOF
    glusterd -f "$D/glusterd.vol" -p "$D/run/glusterd.pid" -l "$D/log/glusterd.log"
    wait_for 30 cli "$D" volume list || die "glusterd did not answer"

    # replica 2 on one server: `force` (same host, root filesystem, split-brain warning)
    cli "$D" volume create srkit-rep replica 2 transport tcp \
        "$H:$D/bricks/rep0" "$H:$D/bricks/rep1" force >/dev/null
    cli "$D" volume set srkit-rep cluster.quorum-type none >/dev/null
    cli "$D" volume set srkit-rep network.ping-timeout 5 >/dev/null
    cli "$D" volume start srkit-rep >/dev/null

    # XFS with reflink on a sparse image: what copy_file_range can turn into a reflink
    truncate -s 6G "$D/xfs.img"
    mkfs.xfs -q -m reflink=1 "$D/xfs.img"
    local loop; loop=$(losetup --find --show "$D/xfs.img")
    echo "$loop" > "$D/xfs.loop"
    mount -t xfs "$loop" "$D/xfs"
    mkdir -p "$D/xfs/brick"
    cli "$D" volume create srkit-xfs transport tcp "$H:$D/xfs/brick" force >/dev/null
    cli "$D" volume set srkit-xfs network.ping-timeout 5 >/dev/null
    cli "$D" volume start srkit-xfs >/dev/null

    wait_for 30 bricks_online "$D" srkit-rep 2 || die "srkit-rep bricks not online"
    wait_for 30 bricks_online "$D" srkit-xfs 1 || die "srkit-xfs brick not online"
    env_ "$D" > "$D/env.sh"
    trap - ERR
    echo "gluster up in $D after $((SECONDS - t0)) s"
}

env_() {
    local D=${1:?usage: env DIR}
    D=$(cd "$D" && pwd)
    [ -e "$D/glusterd.vol" ] || die "no glusterd in $D"
    printf "export %s='%s'\n" \
        SRKIT_GLUSTER_DIR "$D" \
        SRKIT_GLUSTER_HOST 127.0.0.1 \
        SRKIT_GLUSTER_BRICK_HOST "$(hostname)" \
        SRKIT_GLUSTER_VOLUME srkit-rep \
        SRKIT_GLUSTER_BRICKS "$D/bricks/rep0:$D/bricks/rep1" \
        SRKIT_GLUSTER_XFS_VOLUME srkit-xfs \
        SRKIT_GLUSTER_XFS_BRICK "$D/xfs/brick" \
        SRKIT_GLUSTER_SOCK "$D/run/glusterd.socket"
}

# pids of gluster daemons whose command line names this rig's directory (ours only)
our_pids() {
    local D=$1 p
    for p in /proc/[0-9]*; do
        [ -r "$p/cmdline" ] || continue
        case "$(readlink "$p/exe" 2>/dev/null)" in */gluster*) ;; *) continue;; esac
        case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
            *gluster*"$D"/*) echo "${p#/proc/}";;
        esac
    done
}

down() {
    local D=${1:?usage: down DIR}
    [ -d "$D" ] || return 0
    D=$(cd "$D" && pwd)
    case "$D" in /|/usr|/usr/*|/etc|/etc/*|/home|/root|/var|/bin|/sbin|/lib*) die "refusing to remove $D";; esac
    if [ -S "$D/run/glusterd.socket" ]; then
        for v in srkit-rep srkit-xfs; do
            timeout 30 gluster --mode=script --glusterd-sock="$D/run/glusterd.socket" \
                --log-file="$D/log/cli.log" volume stop "$v" force >/dev/null 2>&1 || true
        done
    fi
    local pid i
    for pid in $(our_pids "$D"); do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 1 25); do
        [ -z "$(our_pids "$D")" ] && break
        sleep 0.2
    done
    for pid in $(our_pids "$D"); do kill -KILL "$pid" 2>/dev/null || true; done
    if [ -r /proc/mounts ]; then
        awk -v d="$D/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done
    fi
    if [ -e "$D/xfs.loop" ]; then
        losetup -d "$(cat "$D/xfs.loop")" 2>/dev/null || true
    fi
    [ "${2:-}" = --keep ] || rm -rf "$D"
}

cmd=${1:-}; shift || true
case "$cmd" in
    install) apt_install glusterfs-server glusterfs-client attr xfsprogs util-linux;;
    up) up "$@";;
    down) down "$@";;
    env) env_ "$@";;
    *) die "usage: $0 install [PY]|up DIR|env DIR|down DIR [--keep]";;
esac
