#!/usr/bin/env bash
# build.sh: the initramfs with which e2e/linux_net_test.go boots the Debian
# cloud kernel on a virtio-net device (see README.md beside this script).
#
# Usage: testdata/linuxnet/build.sh OUT.cpio [KERNEL_DIR]
#
# KERNEL_DIR is testdata/kernel/fetch.sh's version directory (default
# ${CHSNAP_CACHE:-$HOME/.cache/chsnap}/kernel/current). The archive (newc,
# uncompressed) holds the host's static busybox, init.sh as /init, the
# modules virtio_mmio and virtio_net need that the kernel's config builds as
# modules (decompressed, listed in load order in /lib/modules/order) and
# /manifest.txt (the kernel manifest, busybox's sha256, the modules loaded).
set -euo pipefail

die() { echo "linuxnet/build.sh: $*" >&2; exit 1; }

(($# >= 1)) || die "usage: build.sh OUT.cpio [KERNEL_DIR]"
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kdir=${2:-${CHSNAP_CACHE:-$HOME/.cache/chsnap}/kernel/current}
[[ -f "$kdir/manifest.txt" ]] || die "no kernel fixture at $kdir (run testdata/kernel/fetch.sh)"
release=$(sed -n 's/^release=//p' "$kdir/manifest.txt")
[[ -n "$release" ]] || die "$kdir/manifest.txt has no release"
config="$kdir/root/boot/config-$release"
moddir="$kdir/root/lib/modules/$release/kernel"
[[ -f "$config" && -d "$moddir" ]] || die "$kdir/root has no config or modules for $release"
for tool in cpio xz busybox; do
	command -v "$tool" >/dev/null 2>&1 || die "missing tool $tool (apt-get install cpio xz-utils busybox-static)"
done
busybox_bin=$(command -v busybox)
file -b "$busybox_bin" 2>/dev/null | grep -q 'statically linked' || die "busybox at $busybox_bin is not static (apt-get install busybox-static)"

tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox_bin" "$tree/bin/busybox"
ln -s busybox "$tree/bin/sh"
cp "$here/init.sh" "$tree/init"
chmod 755 "$tree/init"

# Each wanted module: built in (=y, nothing to load), or a module whose
# depends= names load first. A module name's '-' and '_' are one.
declare -A cfg=([virtio]=CONFIG_VIRTIO [virtio_ring]=CONFIG_VIRTIO [virtio_mmio]=CONFIG_VIRTIO_MMIO
	[virtio_net]=CONFIG_VIRTIO_NET [net_failover]=CONFIG_NET_FAILOVER [failover]=CONFIG_FAILOVER)
declare -A done_mod=()
order=()
load() {
	local m=${1//-/_} opt val ko deps d
	[[ -n "${done_mod[$m]:-}" ]] && return 0
	done_mod[$m]=1
	opt=${cfg[$m]:-}
	if [[ -n "$opt" ]]; then
		val=$(sed -n "s/^$opt=//p" "$config")
		case "$val" in
		y) echo "builtin $m ($opt=y)" >>"$tree/manifest.txt"; return 0 ;;
		m) ;;
		*) die "$opt is '${val:-not set}' in $config: the kernel cannot drive $m" ;;
		esac
	fi
	ko=$(find "$moddir" -name "$m.ko*" -o -name "${m//_/-}.ko*" | head -n1)
	[[ -n "$ko" ]] || die "module $m not found under $moddir"
	case "$ko" in
	*.xz) xz -dc "$ko" >"$tree/lib/modules/$m.ko" ;;
	*.ko) cp "$ko" "$tree/lib/modules/$m.ko" ;;
	*) die "module $ko: unknown compression" ;;
	esac
	deps=$(tr '\0' '\n' <"$tree/lib/modules/$m.ko" | sed -n 's/^depends=//p' | head -n1)
	for d in ${deps//,/ }; do load "$d"; done
	order+=("$m")
	echo "module $m ${ko#"$kdir/root/"} sha256=$(sha256sum <"$ko" | cut -c1-64)" >>"$tree/manifest.txt"
}
{
	cat "$kdir/manifest.txt"
	echo "busybox_sha256=$(sha256sum <"$busybox_bin" | cut -c1-64)"
} >"$tree/manifest.txt"
load virtio_mmio
load virtio_net
printf '%s\n' "${order[@]}" >"$tree/lib/modules/order"

(cd "$tree" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) >"$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
