#!/usr/bin/env bash
# qemu-bundle.sh: copy the host's qemu-system-x86_64, its shared libraries and the x86
# firmware into one directory that run-in-kvm.sh -d can put in the L1 guest, so QEMU runs
# there with -accel kvm (as a reference VMM and a benchmark baseline).
#
# Usage: testdata/nested/qemu-bundle.sh OUTDIR
#
# Inside the L1 guest (run-in-kvm.sh -d OUTDIR ...) run it as /work/qemu ARGS...; the
# wrapper starts the binary through the bundled dynamic loader and passes -L for firmware.
set -euo pipefail

die() { echo "qemu-bundle.sh: $*" >&2; exit 1; }

(($# == 1)) || die "usage: qemu-bundle.sh OUTDIR"
out=$1
qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
command -v ldd >/dev/null || die "ldd not found"

mkdir -p "$out/qemu-lib" "$out/qemu-share"
cp -f "$qemu" "$out/qemu-lib/qemu-system-x86_64"
# Every library ldd resolves, plus the dynamic loader itself.
while read -r lib; do
	[[ -n "$lib" ]] && cp -fL "$lib" "$out/qemu-lib/"
done < <(ldd "$qemu" | awk '/=>/ && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }')
[[ -f "$out/qemu-lib/ld-linux-x86-64.so.2" ]] || die "ldd named no ld-linux-x86-64.so.2 for $qemu"
# Firmware for microvm (qboot/bios-microvm), q35/pc (SeaBIOS) and direct kernel boot.
for f in bios-microvm.bin qboot.rom bios-256k.bin bios.bin pvh.bin linuxboot.bin \
	linuxboot_dma.bin kvmvapic.bin multiboot_dma.bin; do
	for dir in /usr/share/qemu /usr/share/seabios; do
		if [[ -e "$dir/$f" ]]; then
			cp -fL "$dir/$f" "$out/qemu-share/"
			break
		fi
	done
done
[[ -f "$out/qemu-share/bios-microvm.bin" ]] || die "no /usr/share/qemu/bios-microvm.bin"

cat >"$out/qemu" <<'EOF'
#!/bin/sh
# Runs the bundled qemu-system-x86_64 through the bundled loader and libraries.
d=$(dirname "$0")
exec "$d/qemu-lib/ld-linux-x86-64.so.2" --library-path "$d/qemu-lib" \
	"$d/qemu-lib/qemu-system-x86_64" -L "$d/qemu-share" "$@"
EOF
chmod 755 "$out/qemu"
echo "$out/qemu"
