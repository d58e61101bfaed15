#!/bin/bash
# Test rig for tests/packaging: the RPM tool chain on Debian (rpmbuild, rpmsign, createrepo_c,
# dnf, rpmlint, gpg) and a static busybox for the stand-in dom0 package. Nothing runs:
# up/env/down are no-ops (the tests build and install into their own temporary roots).
#
#   tests/rigs/rpm.sh install [PY] | up DIR | env DIR | down DIR
set -euo pipefail

install() {
    local pkgs="rpm rpm2cpio createrepo-c rpmlint dnf busybox-static gnupg make"
    local missing=""
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends $missing >/dev/null \
        || { apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null &&
             apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends $missing >/dev/null; }
}

case "${1:-}" in
    install) install ;;
    up|env|down) ;;
    *) echo "usage: $0 install [PY] | up DIR | env DIR | down DIR" >&2; exit 2 ;;
esac
