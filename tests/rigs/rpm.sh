#!/bin/bash
# Test rig for tests/packaging: the RPM tool chain on Debian (rpmbuild, rpmsign, createrepo_c,
# dnf, rpmlint, gpg) and a static busybox for the stand-in dom0 package. Nothing runs:
# up/env/down are no-ops (the tests build and install into their own temporary roots).
#
#   tests/rigs/rpm.sh install [PY] | up DIR | env DIR | down DIR
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

install() { apt_install rpm rpm2cpio createrepo-c rpmlint dnf busybox-static gnupg make; }

case "${1:-}" in
    install) install ;;
    up|env|down) ;;
    *) echo "usage: $0 install [PY] | up DIR | env DIR | down DIR" >&2; exit 2 ;;
esac
