#!/bin/bash
# Test rig: a throw-away qemu guest running Debian's own kernel, where what this machine
# cannot do runs for real: OpenZFS (Debian bookworm's 2.1 line, the one XCP-ng 8.3 ships)
# and the host datapaths of rbd and s3 (nbd.ko, rbd.ko: rbd-nbd, krbd, the kernel NBD
# client). The machines this project is tested on cannot load kernel modules and their
# /dev/kvm only runs PVM guests, so the guest runs under TCG with a zfs.ko that zfs-dkms
# built on the host (see docs/zfs.md, "Test rig"). tests/rigs/zfs.sh is the same rig.
#
#   tests/rigs/guest.sh install [PY]    packages + dkms build (~6 min the first time, seconds
#                                       after) + the Ceph packages with rbd-nbd (ceph.sh install)
#   tests/rigs/guest.sh run [--] CMD    boot the guest once, run CMD in it (cwd shared
#                                       read-write), print its output, exit with its status
#   tests/rigs/guest.sh up|env|down DIR the common rig interface: nothing to keep running
#   (./dev test runs tests/rigs/guest-suites.sh in it: one pytest per suite, side by side)
#
# In the guest: lo up; zfs.ko, nbd.ko and rbd.ko loaded; systemd-udevd running (for
# /dev/zvol links); SRKIT_GUEST=1 (and SRKIT_ZFS_VM=1), SRKIT_ZFS_DISK=/dev/vda (an empty
# sparse disk), and the caller's exported environment. The guest sees the host's /
# read-only (9p + tmpfs overlay), so the venv, the system python with python3-pyzfs and
# the Ceph binaries (ceph-mon, ceph-osd, rbd-nbd, rbd) are there; writes outside the
# working directory are discarded. The guest has no network but its own loopback: the
# suites that need a server start it inside the guest from the host's binaries on
# 127.0.0.1 (tests/hostpath: a single-node Ceph with tests/rigs/ceph.sh, memstore OSD,
# no mgr; its S3 tests their own S3 server) and stop it when they end.
#
# Knobs: ZFS_VM_MEM (MiB, 3072) ZFS_VM_CPUS (2) ZFS_VM_DISK_SIZE (4G; 0 = none)
#        ZFS_VM_TIMEOUT (s, 7200) ZFS_VM_CACHE (/var/cache/srkit-zfs-vm) ZFS_VM_VERBOSE
# Exit codes of the rig itself: 90 zfs.ko did not load, 91 working dir missing in the guest,
# 124 timeout, 125 the guest died without a status (tail of its console is printed).
set -euo pipefail
HOST_ENV=$(export -p)
export PATH=$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CACHE=${ZFS_VM_CACHE:-/var/cache/srkit-zfs-vm}
APT="apt-get -o DPkg::Lock::Timeout=900 -y -q --no-install-recommends"
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

say() { echo "guest.sh: $*" >&2; }

# newest kernel having both a bootable image and a dkms-built zfs.ko
guest_kernel() {
    local k found=""
    [ -d /lib/modules ] || return 0
    for k in $(ls -1 /lib/modules | sort -V); do
        [ -f "/boot/vmlinuz-$k" ] || continue
        if compgen -G "/lib/modules/$k/updates/dkms/zfs.ko*" >/dev/null \
            || compgen -G "/lib/modules/$k/extra/zfs.ko*" >/dev/null; then
            found=$k
        fi
    done
    echo "$found"
}

install() {
    local t0 k bv v
    t0=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    # zfs-dkms, zfsutils-linux and python3-pyzfs live in Debian's contrib component
    if ! grep -rqsE '^Components:.*contrib|^deb .* contrib' /etc/apt/sources.list.d/ /etc/apt/sources.list; then
        say "enabling contrib"
        sed -i 's/^Components: main$/Components: main contrib/' /etc/apt/sources.list.d/debian.sources
        apt-get -o DPkg::Lock::Timeout=900 update -qq
    fi
    # INITRD=No: the guest boots the rig's own small initramfs, Debian's is not needed
    INITRD=No $APT install qemu-system-x86 busybox-static kmod cpio file \
        linux-image-amd64 linux-headers-amd64 >/dev/null
    k=$(ls -1 /boot/vmlinuz-*-amd64 | sed 's|.*/vmlinuz-||' | sort -V | tail -1)
    if [ -z "$(guest_kernel)" ] || ! command -v zfs >/dev/null \
        || ! dpkg-query -W -f='${Status}' python3-pyzfs 2>/dev/null | grep -q 'ok installed'; then
        # bookworm's own version (2.1.x), pinned so a host that had backports moves back
        bv=$(apt-cache madison zfs-dkms | awk -F'|' '$3 ~ /bookworm\/contrib/ && $3 !~ /backports/ {gsub(/ /,"",$2); print $2; exit}')
        [ -n "$bv" ] || { say "zfs-dkms not found in bookworm contrib"; exit 1; }
        INITRD=No $APT --allow-downgrades install "zfs-dkms=$bv" "zfsutils-linux=$bv" \
            "libnvpair3linux=$bv" "libuutil3linux=$bv" "libzfs4linux=$bv" "libzpool5linux=$bv" \
            "python3-pyzfs=$bv" >/dev/null
    fi
    if ! compgen -G "/lib/modules/$k/updates/dkms/zfs.ko*" >/dev/null; then
        v=$(dpkg-query -W -f '${Version}' zfs-dkms | sed 's/-[^-]*$//')
        say "building zfs $v for $k"
        dkms install "zfs/$v" -k "$k"
    fi
    # the Ceph the host-datapath suites start inside the guest, and rbd-nbd
    bash "$(dirname "$SELF")/ceph.sh" install "${1:-python3}"
    say "ready in $(( $(date +%s) - t0 )) s (guest kernel $(guest_kernel))"
}

# a ~2 MB initramfs: static busybox + the virtio/9p/overlay modules Debian builds as =m
initramfs() {
    local k=$1 out d f m
    out=$CACHE/initrd-$k-$(md5sum < "$SELF" | cut -c1-8).cpio.gz
    if [ -s "$out" ]; then echo "$out"; return; fi
    mkdir -p "$CACHE"
    rm -f "$CACHE/initrd-$k-"*.cpio.gz
    d=$(mktemp -d)
    mkdir -p "$d"/{bin,mods,proc,sys,dev,lower,up,newroot}
    cp /bin/busybox "$d/bin/busybox"
    file -L "$d/bin/busybox" | grep -q 'statically linked' || { say "busybox is not static"; exit 1; }
    : > "$d/mods.list"
    for m in virtio_pci virtio_blk virtio_console 9pnet_virtio 9p overlay; do
        modprobe -S "$k" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
    done | awk '!seen[$0]++' | while read -r f; do
        cp "$f" "$d/mods/"
        basename "$f" >> "$d/mods.list"
    done
    cat > "$d/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /mods.list); do insmod /mods/$m || echo "insmod $m failed"; done
for a in $(cat /proc/cmdline); do
    case $a in srkit.xchg=*) XCHG=${a#*=};; srkit.work=*) WORK=${a#*=};; esac
done
die() { echo "guest init: $*"; poweroff -f; }
NINEP="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o $NINEP,cache=loose,ro hostroot /lower || die "9p root"
mount -t tmpfs -o mode=755 tmpfs /up && mkdir -p /up/u /up/w
mount -t overlay -o lowerdir=/lower,upperdir=/up/u,workdir=/up/w overlay /newroot || die overlay
R=/newroot
mount -t proc proc $R/proc; mount -t sysfs sysfs $R/sys; mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm; mount -t devpts devpts $R/dev/pts; mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs -o mode=755 tmpfs $R/run; mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mkdir -p $R$XCHG; mount -t 9p -o $NINEP,cache=mmap xchg $R$XCHG || die "9p xchg"
mkdir -p $R$WORK; mount -t 9p -o $NINEP,cache=mmap work $R$WORK || die "9p work"
i=0; while [ ! -e /dev/hvc0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
# udevadm refuses to work inside a chroot, hence switch_root
exec switch_root $R /bin/bash $XCHG/pid1.sh
EOF
    chmod +x "$d/init"
    (cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$d"
    echo "$out"
}

run() {
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || { say "usage: guest.sh run -- CMD [ARGS]"; exit 2; }
    local k initrd work x rc qrc accel
    k=$(guest_kernel)
    [ -n "$k" ] || { say "no kernel with zfs.ko; run: tests/rigs/guest.sh install"; exit 2; }
    initrd=$(initramfs "$k")
    work=$(pwd -P)
    case "$work" in /|*[[:space:]]*) say "working dir must not be / nor contain spaces"; exit 2;; esac
    x=$(mktemp -d /tmp/srkit-guest.XXXXXX)
    chmod 755 "$x"
    # PYTHONDONTWRITEBYTECODE stays out: under TCG compiling a module costs about as much
    # as the rest of an import, and every driver call is a fresh python; the working tree
    # is shared read-write, so its __pycache__ outlives the boot
    printf '%s\n' "$HOST_ENV" \
        | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_|TERM|HOSTNAME|TMPDIR|PS1|SSH_[A-Z_]*|DISPLAY|XDG_[A-Z_]*|PYTHONDONTWRITEBYTECODE)(=|$)' \
        > "$x/env.sh" || true
    {
        echo '#!/bin/bash'
        echo ". $x/env.sh"
        echo 'export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"'
        echo 'export SRKIT_GUEST=1 SRKIT_ZFS_VM=1 HOME=${HOME:-/root}'
        [ "${ZFS_VM_DISK_SIZE:-4G}" != 0 ] && echo 'export SRKIT_ZFS_DISK=/dev/vda'
        # udevd makes the /dev/zvol/<pool>/<vol> links; triggering only "block" keeps boot short
        echo '/lib/systemd/systemd-udevd --daemon >/dev/null 2>&1; udevadm trigger --action=add --subsystem-match=block >/dev/null 2>&1; udevadm settle -t 10 || true'
        echo "modprobe zfs zfs_arc_max=536870912 || { echo 'guest.sh: modprobe zfs failed'; exit 90; }"
        # the host datapaths: the kernel NBD client (rbd-nbd, s3) and krbd; servers on lo
        echo "ip link set lo up; modprobe nbd nbds_max=16; modprobe rbd || echo 'guest.sh: nbd/rbd modules missing'"
        # a name of its own (Ceph's OSD puts it in the CRUSH map; "(none)" is refused)
        echo "hostname srkit-guest"
        printf 'cd %q || exit 91\n' "$work"
        printf '%q ' "$@"
        echo
    } > "$x/guest.sh"
    # PID 1: keep hvc0 open and raw (its termios resets when the last fd closes), pipe
    # through cat so the command sees no tty, report the status, power off
    cat > "$x/pid1.sh" <<EOF
#!/bin/bash
exec 3>/dev/hvc0
stty -F /dev/hvc0 raw -echo 2>/dev/null
/bin/bash $x/guest.sh </dev/null 2>&1 | cat >&3
echo \${PIPESTATUS[0]} > $x/rc
sync
/bin/busybox poweroff -f
EOF
    local disk=()
    if [ "${ZFS_VM_DISK_SIZE:-4G}" != 0 ]; then
        truncate -s "${ZFS_VM_DISK_SIZE:-4G}" "$x/disk.img"
        disk=(-drive "file=$x/disk.img,if=virtio,format=raw,cache=unsafe,discard=unmap")
    fi
    # real KVM needs svm/vmx; a kvm_pvm /dev/kvm cannot boot a stock kernel -> TCG
    local mach
    if [ -c /dev/kvm ] && grep -qwE 'svm|vmx' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then
        mach=(-machine q35,accel=kvm -cpu host,-arch-capabilities); accel=kvm
    else
        # qemu64: ZFS would pick AVX2 checksums on "max", which TCG emulates slowly
        mach=(-machine q35 -accel tcg,thread=multi,tb-size=512 -cpu qemu64); accel=tcg
    fi
    [ -n "${ZFS_VM_VERBOSE:-}" ] && say "kernel $k, $accel, exchange dir $x"
    set +e
    timeout --foreground -k 10 "${ZFS_VM_TIMEOUT:-7200}" qemu-system-x86_64 \
        -name srkit-guest "${mach[@]}" -smp "${ZFS_VM_CPUS:-2}" -m "${ZFS_VM_MEM:-3072}" \
        -nodefaults -no-user-config -display none -vga none -no-reboot \
        -kernel "/boot/vmlinuz-$k" -initrd "$initrd" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off srkit.xchg=$x srkit.work=$work" \
        -serial "file:$x/console.log" \
        -device virtio-serial-pci -chardev stdio,id=out,signal=off -device virtconsole,chardev=out \
        -fsdev "local,id=root,path=/,security_model=passthrough,readonly=on,multidevs=remap" \
        -device virtio-9p-pci,fsdev=root,mount_tag=hostroot \
        -fsdev "local,id=xchg,path=$x,security_model=passthrough" -device virtio-9p-pci,fsdev=xchg,mount_tag=xchg \
        -fsdev "local,id=work,path=$work,security_model=passthrough,multidevs=remap" \
        -device virtio-9p-pci,fsdev=work,mount_tag=work \
        "${disk[@]}" </dev/null
    qrc=$?
    set -e
    if [ -s "$x/rc" ]; then
        rc=$(cat "$x/rc")
        rm -rf "$x"
        exit "$rc"
    fi
    rm -f "$x/disk.img"
    [ $qrc -eq 124 ] && { say "timeout after ${ZFS_VM_TIMEOUT:-7200} s"; exit 124; }
    say "guest exited without a status (qemu rc $qrc); console log $x/console.log:"
    tail -n 30 "$x/console.log" >&2 || true
    exit 125
}

case "${1:-}" in
install) shift; install "$@" ;;
run) shift; run "$@" ;;
up|env|down) ;;   # nothing runs between guest boots
*) sed -n '2,29p' "$0" >&2; exit 2 ;;
esac
