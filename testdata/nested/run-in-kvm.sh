#!/usr/bin/env bash
# run-in-kvm.sh: run a static binary where /dev/kvm works, on a host without /dev/kvm.
#
# Usage: testdata/nested/run-in-kvm.sh [-d DIR] BINARY [ARGS...]
#
# Boots the Debian cloud kernel (testdata/kernel/fetch.sh) under QEMU with TCG and an
# AMD CPU model that has SVM, so the L1 guest loads kvm_amd and gets /dev/kvm (nested
# virtualization emulated by TCG). The initramfs holds busybox, the kvm modules, the
# network modules the e2e network tests use (tun, dummy, veth, tap, macvlan, macvtap), BINARY
# at /work/BINARY-NAME and, with -d, the contents of DIR under /work. /init runs
# BINARY ARGS... in /work with /dev/kvm present, prints NESTED-EXIT=<code> and powers off.
# The guest's serial output is streamed to stdout; the script exits with BINARY's exit code,
# or 125 when no exit marker came (boot failure, timeout, /dev/kvm missing in L1).
#
# Environment:
#   CHSNAP_CACHE        cache root (default $HOME/.cache/chsnap); pieces go in nested/
#   NESTED_CPU          QEMU -cpu model (default max; EPYC and qemu64,+svm,+npt also work)
#   NESTED_SMP          vCPUs of the L1 guest (default 1; L2 guests may still have many)
#   NESTED_TCG_THREAD   single (default) or multi; multi-threaded TCG with NESTED_SMP>1 once
#                       crashed the L1 kernel (stale int3 from text patching, see README.md)
#   NESTED_MEM          memory of the L1 guest (default 2G)
#   NESTED_TIMEOUT      seconds before QEMU is killed (default 600)
#   NESTED_KERNEL       vmlinux (default; PVH entry, skips in-guest decompression) or bzimage
#   NESTED_VERBOSE=1    show the kernel log on the console (no "quiet")
set -euo pipefail

die() { echo "run-in-kvm.sh: $*" >&2; exit 125; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache="${CHSNAP_CACHE:-$HOME/.cache/chsnap}"

extra_dir=""
while (($# > 0)); do
	case "$1" in
	-d) (($# >= 2)) || die "-d needs a directory"; extra_dir=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	--) shift; break ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
(($# >= 1)) || die "usage: run-in-kvm.sh [-d DIR] BINARY [ARGS...]"
binary=$1
shift
[[ -f "$binary" && -x "$binary" ]] || die "binary $binary is not an executable file"
[[ -z "$extra_dir" || -d "$extra_dir" ]] || die "extra directory $extra_dir does not exist"
if file -b "$binary" 2>/dev/null | grep -q 'dynamically linked'; then
	die "binary $binary is dynamically linked; the guest has no libc (build it static)"
fi

for tool in qemu-system-x86_64 cpio xz busybox; do
	command -v "$tool" >/dev/null 2>&1 || die "missing tool $tool (apt-get install qemu-system-x86 cpio xz-utils busybox-static)"
done
busybox_bin=$(command -v busybox)
file -b "$busybox_bin" | grep -q 'statically linked' || die "busybox at $busybox_bin is not static (apt-get install busybox-static)"

# The L1 kernel and its modules.
# The fetched kernel in kernel/current is used as it is; fetch.sh runs only when there is none.
kdir="$cache/kernel/current"
if [[ ! -f "$kdir/manifest.txt" || ! -f "$kdir/vmlinuz" ]]; then
	kdir=$("$here/../kernel/fetch.sh" | head -n1) || die "testdata/kernel/fetch.sh failed"
fi
kdir=$(cd "$kdir" && pwd -P)
release=$(sed -n 's/^release=//p' "$kdir/manifest.txt")
[[ -n "$release" ]] || die "$kdir/manifest.txt has no release"
moddir="$kdir/root/lib/modules/$release/kernel"

# The base initramfs: busybox, /init, the kvm and network modules; rebuilt when this script or
# the kernel changes.
ndir="$cache/nested/$release"
mkdir -p "$ndir"
stamp=$(cat "${BASH_SOURCE[0]}" "$kdir/manifest.txt" "$busybox_bin" | sha256sum | cut -c1-16)
base="$ndir/base-$stamp.cpio"
if [[ ! -f "$base" ]]; then
	tree=$(mktemp -d "$ndir/tree.XXXXXX")
	trap 'rm -rf "$tree"' EXIT
	mkdir -p "$tree"/{bin,dev,proc,sys,tmp,work,lib/kvm}
	cp "$busybox_bin" "$tree/bin/busybox"
	ln -s busybox "$tree/bin/sh"
	# Load order follows each module's depends= line (modinfo -F depends):
	# kvm needs irqbypass, kvm-amd needs kvm.
	for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do
		src="$moddir/$m.ko.xz"
		[[ -f "$src" ]] || die "kernel $release has no module $m.ko.xz"
		xz -dc "$src" >"$tree/lib/kvm/$(basename "$m").ko"
	done
	# Network modules for the e2e network tests, loaded in this order (depends=:
	# macvtap needs tap and macvlan; the others need nothing). A missing one
	# only costs the tests that use it, so it is a warning, not an error.
	mkdir -p "$tree/lib/net"
	for m in tun dummy veth tap macvlan macvtap; do
		src="$moddir/drivers/net/$m.ko.xz"
		if [[ -f "$src" ]]; then
			xz -dc "$src" >"$tree/lib/net/$m.ko"
		else
			echo "run-in-kvm.sh: warning: kernel $release has no module drivers/net/$m.ko.xz" >&2
		fi
	done
	cat >"$tree/init" <<'EOF'
#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# Let memfd-backed guest RAM (chsnap's) use transparent huge pages when it
# asks with MADV_HUGEPAGE, as anonymous memory (QEMU's) already may.
echo advise >/sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null || true
echo "NESTED-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in irqbypass kvm kvm-amd; do
	insmod /lib/kvm/$m.ko || echo "NESTED-ERROR insmod $m failed"
done
for m in tun dummy veth tap macvlan macvtap; do
	[ -f /lib/net/$m.ko ] || { echo "NESTED-WARN no module $m"; continue; }
	# dummy would otherwise add a dummy0 to this namespace; tests make their own.
	args=; [ $m = dummy ] && args=numdummies=0
	insmod /lib/net/$m.ko $args || echo "NESTED-WARN insmod $m failed"
done
# devtmpfs makes /dev/net/tun when tun registers its misc device (10:200).
if [ ! -c /dev/net/tun ] && [ -d /sys/class/misc/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 || echo "NESTED-WARN cannot make /dev/net/tun"
fi
[ -c /dev/net/tun ] || echo "NESTED-WARN /dev/net/tun missing: the network tests will skip"
ip link set lo up 2>/dev/null || echo "NESTED-WARN cannot bring lo up"
if [ -c /dev/kvm ]; then
	echo "NESTED-KVM ready uptime=$(cut -d' ' -f1 /proc/uptime)"
	cd /work
	export HOME=/tmp TMPDIR=/tmp
	. /work/.nested-cmd
	echo "NESTED-EXIT=$?"
else
	echo "NESTED-ERROR /dev/kvm missing after insmod; kernel log:"
	grep -iE 'kvm|svm|npt|virtuali' /proc/cpuinfo | sort -u | head -n 3
	dmesg | grep -iE 'kvm|svm' || dmesg | tail -n 20
fi
poweroff -f
EOF
	chmod 755 "$tree/init"
	(cd "$tree" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$base.tmp"
	rm -f "$ndir"/base-*.cpio
	mv -f "$base.tmp" "$base"
	rm -rf "$tree"
	trap - EXIT
fi

# The per-run archive: the binary, the extra files and the command line, appended to the
# base (the kernel unpacks concatenated newc archives in order).
run=$(mktemp -d "${TMPDIR:-/tmp}/run-in-kvm.XXXXXX")
trap 'rm -rf "$run"' EXIT
mkdir -p "$run/tree/work"
if [[ -n "$extra_dir" ]]; then
	cp -a "$extra_dir"/. "$run/tree/work/"
fi
name=$(basename "$binary")
cp "$binary" "$run/tree/work/$name"
chmod 755 "$run/tree/work/$name"
# quote ARG prints ARG in single quotes for the guest's sh.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
	printf './%s' "$(quote "$name")"
	for a in "$@"; do printf ' %s' "$(quote "$a")"; done
	printf '\n'
} >"$run/tree/work/.nested-cmd"
(cd "$run/tree" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$run/extra.cpio"
cat "$base" "$run/extra.cpio" >"$run/initrd.cpio"

case "${NESTED_KERNEL:-vmlinux}" in
bzimage) kernel="$kdir/vmlinuz" ;;
vmlinux) kernel="$kdir/vmlinux" ;;
*) die "NESTED_KERNEL must be bzimage or vmlinux, not ${NESTED_KERNEL}" ;;
esac
append="console=ttyS0 panic=-1 mitigations=off"
[[ "${NESTED_VERBOSE:-0}" == 1 ]] || append="$append quiet"

qemu=(qemu-system-x86_64 -M q35 -accel "tcg,thread=${NESTED_TCG_THREAD:-single}" -cpu "${NESTED_CPU:-max}"
	-smp "${NESTED_SMP:-1}" -m "${NESTED_MEM:-2G}" -no-reboot
	-nodefaults -no-user-config -display none -serial stdio
	-kernel "$kernel" -initrd "$run/initrd.cpio" -append "$append")

# Stream the console, without carriage returns, and keep a copy to find the exit marker.
set +e
timeout --foreground -k 5 "${NESTED_TIMEOUT:-600}" "${qemu[@]}" </dev/null 2>&1 |
	tr -d '\r' | tee "$run/console.log"
qrc=${PIPESTATUS[0]}
set -e
code=$(sed -n 's/^NESTED-EXIT=\([0-9]\{1,3\}\)$/\1/p' "$run/console.log" | tail -n1)
if [[ -z "$code" ]]; then
	((qrc == 124)) && echo "run-in-kvm.sh: qemu timed out after ${NESTED_TIMEOUT:-600} s" >&2
	grep -q 'Kernel panic' "$run/console.log" && echo "run-in-kvm.sh: the L1 kernel panicked" >&2
	die "no NESTED-EXIT marker in the guest output (qemu exit $qrc)"
fi
exit "$code"
