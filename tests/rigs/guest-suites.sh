#!/bin/bash
# Run inside the guest of tests/rigs/guest.sh: one pytest per suite, side by side.
#
#   bash tests/rigs/guest-suites.sh PYTHON [PYTEST ARGS] -- SUITE [SUITE...]
#
# Each suite (a test path, e.g. tests/zfs) is one pytest process: a suite is a chain of
# driver processes one after the other, so two of them keep the guest's two vCPUs busy
# once the host suite beside the guest is done. Outputs are shown suite by suite; the
# status is the first failure's, 5 ("nothing collected") only if every suite said so.
set -u
py=$1; shift
args=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
shift || true
[ $# -gt 0 ] || { echo "guest-suites.sh: no suite given" >&2; exit 2; }
dir=$(mktemp -d)
pids=()
i=0
for suite in "$@"; do
    "$py" -m pytest "${args[@]}" "$suite" > "$dir/$i.out" 2>&1 &
    pids+=($!)
    i=$((i + 1))
done
rc=5
i=0
for suite in "$@"; do
    src=0
    wait "${pids[$i]}" || src=$?
    echo "== $suite (pytest status $src) =="
    cat "$dir/$i.out"
    if [ $src -ne 0 ] && [ $src -ne 5 ] && { [ $rc -eq 0 ] || [ $rc -eq 5 ]; }; then
        rc=$src
    elif [ $src -eq 0 ] && [ $rc -eq 5 ]; then
        rc=0
    fi
    i=$((i + 1))
done
rm -rf "$dir"
exit $rc
