#!/bin/bash
# The guest rig under its first name: tests/rigs/guest.sh (ZFS and the host datapaths).
exec bash "$(cd "$(dirname "$0")" && pwd)/guest.sh" "$@"
