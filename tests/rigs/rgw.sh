#!/bin/bash
# Test rig: Ceph's radosgw (Debian's `radosgw`, 16.2) as a second real S3 server, on the
# Ceph rig's cluster (tests/rigs/ceph.sh), beast frontend on 127.0.0.1, SigV4 with a user
# made by `radosgw-admin user create`.
#
#   tests/rigs/rgw.sh install [PY]  apt radosgw (+ what ceph.sh and s3.sh install)
#   tests/rigs/rgw.sh up DIR        start radosgw on the cluster of $SRKIT_CEPH_DIR (the ceph
#                                   rig, when it is up first) or else on its own cluster in
#                                   DIR/ceph; create the user and the test bucket
#   tests/rigs/rgw.sh env DIR       print the exports tests need (eval "$(... env DIR)")
#   tests/rigs/rgw.sh down DIR      stop radosgw (pid file, guarded), its own cluster if it
#                                   made one, and rm -rf DIR
#
# The rgw pools (.rgw.root, default.rgw.{log,control,meta,buckets.index,buckets.data}) take
# the cluster's default of 8 PGs each: ~50 PGs on the single OSD. The port is the first
# free one from 7480 (radosgw's default).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

die() { echo "rgw.sh: $*" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
ACCESS=srkit-rgw
SECRET=srkit-rgw-secret
BUCKET=srkit
NAME=client.rgw.srkit


pidfile() { echo "$1/run/ceph-$NAME.pid"; }   # ceph.conf's `pid file`, in the cluster dir

up() {
    local D=${1:?usage: up DIR}
    [ -e "$D" ] && [ -n "$(ls -A "$D")" ] && die "$D is not empty"
    mkdir -p "$D"; D=$(cd "$D" && pwd)
    local t0=$SECONDS cephdir=${SRKIT_CEPH_DIR:-}
    if [ -z "$cephdir" ] || [ ! -e "$cephdir/ceph.conf" ]; then
        bash "$HERE/ceph.sh" up "$D/ceph" >/dev/null
        cephdir=$D/ceph
    fi
    echo "$cephdir" > "$D/cephdir"
    local C=$cephdir/ceph.conf port
    trap 'echo "rgw.sh up failed; log tail:" >&2; tail -n 30 "$D/rgw.log" >&2 2>/dev/null || true' ERR
    ceph -c "$C" auth get-or-create "$NAME" mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
        -o "$D/keyring"
    port=$(free_port 7480)
    echo "$port" > "$D/port"
    # 16 worker threads instead of 512 and no resharding: a test server, not a gateway
    radosgw -c "$C" -n "$NAME" --keyring "$D/keyring" --log-file "$D/rgw.log" \
        --rgw-frontends "beast endpoint=127.0.0.1:$port" --rgw-thread-pool-size 16 \
        --rgw-dynamic-resharding false --debug-rgw 1 --debug-ms 0
    local i
    for i in $(seq 1 300); do port_busy "$port" && break; sleep 0.1; done
    port_busy "$port" || die "radosgw did not listen on 127.0.0.1:$port; see $D/rgw.log"
    # (already there when rgw is brought up again on a cluster that kept running)
    radosgw-admin -c "$C" user info --uid srkit >/dev/null 2>&1 \
        || radosgw-admin -c "$C" user create --uid srkit --display-name "srkit tests" \
            --access-key "$ACCESS" --secret-key "$SECRET" >/dev/null
    /usr/bin/python3 "$HERE/s3ready.py" "$port" "$ACCESS" "$SECRET" "$BUCKET" bucket
    trap - ERR
    echo "radosgw up on 127.0.0.1:$port in $((SECONDS - t0)) s"
}

env_() {
    local D=${1:?usage: env DIR}
    D=$(cd "$D" && pwd)
    [ -e "$D/port" ] || die "no radosgw in $D"
    echo "export SRKIT_RGW_ENDPOINT=http://127.0.0.1:$(cat "$D/port")"
    echo "export SRKIT_RGW_ACCESS_KEY=$ACCESS SRKIT_RGW_SECRET_KEY=$SECRET SRKIT_RGW_BUCKET=$BUCKET"
    echo "export SRKIT_RGW_RIG=$D"
}

down() {
    local D=${1:?usage: down DIR}
    [ -d "$D" ] || return 0
    D=$(cd "$D" && pwd)
    case "$D" in /|/usr|/usr/*|/etc|/etc/*|/home|/root|/var|/bin|/sbin|/lib*) die "refusing to remove $D";; esac
    local cephdir pid i
    cephdir=$(cat "$D/cephdir" 2>/dev/null || true)
    if [ -n "$cephdir" ]; then
        pid=$(cat "$(pidfile "$cephdir")" 2>/dev/null || true)
        # only our radosgw: its command line names this rig's keyring
        if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$D/keyring"; then
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 1 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    [ "$cephdir" = "$D/ceph" ] && bash "$HERE/ceph.sh" down "$D/ceph"
    rm -rf "$D"
}

cmd=${1:-}; shift || true
case "$cmd" in
    install)
        bash "$HERE/ceph.sh" install "${1:-python3}"
        bash "$HERE/s3.sh" install "${1:-python3}"   # boto3 for the drivers and the tests
        apt_install radosgw
        ;;
    up) up "$@";;
    env) env_ "$@";;
    down) down "$@";;
    *) sed -n '2,15p' "$0"; exit 2;;
esac
