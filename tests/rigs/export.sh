#!/bin/bash
# Test rig for tests/export: the independent tools that check exported images.
# Nothing runs: `up`, `env` and `down` have nothing to do.
#
#   tests/rigs/export.sh install    qemu-utils (qemu-img), zstd, python3-zstandard
#                                   (what /usr/bin/python3 runs the export with),
#                                   libvhdi-utils + python3-libvhdi (a second VHD reader that
#                                   follows differencing chains, which qemu-img does not)
set -euo pipefail

case "${1:-}" in
install)
    missing=""
    for p in qemu-utils zstd python3-zstandard libvhdi-utils python3-libvhdi; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends $missing >/dev/null \
            || { apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null &&
                 apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends $missing >/dev/null; }
    fi
    ;;
up|down) mkdir -p "${2:?DIR}"; [ "$1" = down ] && rm -rf "$2"; true ;;
env) ;;
*) echo "usage: $0 install [PY] | up DIR | env DIR | down DIR" >&2; exit 2 ;;
esac
