#!/bin/bash
# Test rig for tests/export: the independent tools that check exported images.
# Nothing runs: `up`, `env` and `down` have nothing to do.
#
#   tests/rigs/export.sh install    qemu-utils (qemu-img), zstd, python3-zstandard
#                                   (what /usr/bin/python3 runs the export with),
#                                   libvhdi-utils + python3-libvhdi (a second VHD reader that
#                                   follows differencing chains, which qemu-img does not)
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

case "${1:-}" in
install)
    apt_install qemu-utils zstd python3-zstandard libvhdi-utils python3-libvhdi
    ;;
up|down) mkdir -p "${2:?DIR}"; [ "$1" = down ] && rm -rf "$2"; true ;;
env) ;;
*) echo "usage: $0 install [PY] | up DIR | env DIR | down DIR" >&2; exit 2 ;;
esac
