#!/usr/bin/env bash
# fetch.sh: fetch the newest Debian cloud kernel (linux-image-*-cloud-amd64-unsigned),
# extract it into a cache outside git, record what was fetched, and extract an
# uncompressed vmlinux ELF (with its PVH entry note) from the bzImage payload.
#
# Usage: testdata/kernel/fetch.sh [PACKAGE]
#   PACKAGE defaults to the newest linux-image-*-cloud-amd64-unsigned apt knows.
#        testdata/kernel/fetch.sh --extract BZIMAGE VMLINUX
#   only extracts the vmlinux ELF from any bzImage (prints the payload's magic).
#
# Cache layout (CHSNAP_CACHE defaults to $HOME/.cache/chsnap):
#   $CHSNAP_CACHE/kernel/<version>/<package>.deb
#   $CHSNAP_CACHE/kernel/<version>/root/         the extracted package (dpkg-deb -x)
#   $CHSNAP_CACHE/kernel/<version>/vmlinuz       the bzImage
#   $CHSNAP_CACHE/kernel/<version>/vmlinux       the uncompressed ELF from its payload
#   $CHSNAP_CACHE/kernel/<version>/manifest.txt  key=value lines
#   $CHSNAP_CACHE/kernel/current -> <version>
#
# Idempotent: a complete version directory (manifest.txt present and matching) is reused.
# Prints the version directory and the files in it on success, nothing else.
set -euo pipefail

die() { echo "fetch.sh: $*" >&2; exit 1; }

need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || die "missing tool $tool"
	done
}
need sha256sum od readelf

cache_root="${CHSNAP_CACHE:-$HOME/.cache/chsnap}/kernel"
pattern='^linux-image-.*-cloud-amd64-unsigned$'

# candidate_version PACKAGE prints apt's candidate version of PACKAGE, or nothing.
candidate_version() {
	apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2; exit }'
}

# newest_package prints the cloud kernel package with the highest candidate version.
newest_package() {
	local -a pkgs
	mapfile -t pkgs < <(apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$pattern" | sort)
	((${#pkgs[@]} > 0)) || return 1
	local best="" best_ver="" pkg="" line ver
	while IFS= read -r line; do
		if [[ "$line" != " "* && "$line" == *: ]]; then
			pkg=${line%:}
			continue
		fi
		[[ "$line" =~ ^[[:space:]]+Candidate:[[:space:]]+(.+)$ ]] || continue
		ver=${BASH_REMATCH[1]}
		[[ -n "$pkg" && "$ver" != "(none)" ]] || continue
		if [[ -z "$best" ]] || dpkg --compare-versions "$ver" gt "$best_ver"; then
			best=$pkg
			best_ver=$ver
		fi
	done < <(apt-cache policy "${pkgs[@]}" 2>/dev/null)
	[[ -n "$best" ]] && echo "$best"
}

# le32 FILE OFFSET prints the little-endian 32-bit value at OFFSET.
le32() { od -An -t u4 -j "$2" -N 4 --endian=little "$1" | tr -d ' '; }
# u8 FILE OFFSET prints the byte at OFFSET.
u8() { od -An -t u1 -j "$2" -N 1 "$1" | tr -d ' '; }
# hexat FILE OFFSET COUNT prints COUNT bytes at OFFSET as one hex string.
hexat() { od -An -t x1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }

# extract_vmlinux BZIMAGE OUT decompresses the bzImage's protected-mode payload to OUT.
extract_vmlinux() {
	local bz=$1 out=$2 setup_sects payload_offset payload_length start magic tmp
	[[ "$(hexat "$bz" $((0x202)) 4)" == "48647253" ]] || die "$bz: no HdrS setup header"
	setup_sects=$(u8 "$bz" $((0x1f1)))
	((setup_sects == 0)) && setup_sects=4
	payload_offset=$(le32 "$bz" $((0x248)))
	payload_length=$(le32 "$bz" $((0x24c)))
	((payload_length > 0)) || die "$bz: payload_length is 0"
	start=$(((setup_sects + 1) * 512 + payload_offset))
	tmp="$out.tmp"
	rm -f "$tmp"
	magic=$(hexat "$bz" "$start" 6)
	# The payload is followed (inside payload_length) by a 4-byte uncompressed size
	# for most formats; the decompressors stop at the end of their stream, and we
	# judge success by the ELF check below rather than by their exit status, since
	# some (lz4 legacy, lzma) complain about those trailing bytes.
	local -a cmd
	case "$magic" in
	1f8b*) need gzip; cmd=(gzip -dc) ;;
	fd377a585a00) need xz; cmd=(xz -dc --single-stream) ;;
	02214c18*) need lz4; cmd=(lz4 -dc) ;;
	28b52ffd*) need zstd; cmd=(zstd -dc) ;;
	425a68*) need bzip2; cmd=(bzip2 -dc) ;;
	5d0000*) need xz; cmd=(xz -dc --format=lzma) ;;
	894c5a*) need lzop; cmd=(lzop -dc) ;;
	*) die "$bz: unknown payload compression (magic $magic at $start)" ;;
	esac
	tail -c +"$((start + 1))" "$bz" | head -c "$payload_length" | "${cmd[@]}" >"$tmp" 2>/dev/null || true
	[[ "$(hexat "$tmp" 0 4)" == "7f454c46" ]] || die "$bz: decompressed payload ($magic) is not an ELF file"
	readelf -n "$tmp" 2>/dev/null | grep -qi 'Xen.*PHYS32_ENTRY\|0x00000012' ||
		die "$bz: vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"
	echo "$magic"
	mv -f "$tmp" "$out"
}

if [[ "${1:-}" == --extract ]]; then
	(($# == 3)) || die "usage: fetch.sh --extract BZIMAGE VMLINUX"
	extract_vmlinux "$2" "$3"
	exit 0
fi

need apt-cache apt-get dpkg dpkg-deb
pkg="${1:-}"
if [[ -z "$pkg" ]]; then
	pkg=$(newest_package || true)
	if [[ -z "$pkg" ]]; then
		apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed"
		pkg=$(newest_package || true)
	fi
	[[ -n "$pkg" ]] || die "apt knows no package matching $pattern"
fi
version=$(candidate_version "$pkg")
[[ -n "$version" ]] || die "apt has no candidate version of $pkg"

dir="$cache_root/$version"
mkdir -p "$dir"

# first_file GLOB... prints the first existing path among its (glob-expanded) arguments.
first_file() {
	local f
	for f in "$@"; do
		[[ -e "$f" ]] && { echo "$f"; return 0; }
	done
	return 0
}

manifest="$dir/manifest.txt"
complete=0
if [[ -f "$manifest" && -f "$dir/vmlinux" && -f "$dir/vmlinuz" ]] &&
	grep -qx "package=$pkg" "$manifest" && grep -qx "version=$version" "$manifest"; then
	want=$(sed -n 's/^vmlinuz_sha256=//p' "$manifest")
	have=$(sha256sum "$dir/vmlinuz" | cut -d' ' -f1)
	[[ "$want" == "$have" ]] && complete=1
fi

if ((complete == 0)); then
	deb=$(first_file "$dir"/"${pkg}"_*.deb)
	if [[ -z "$deb" ]]; then
		log="$dir/download.log"
		(cd "$dir" && apt-get download -q "$pkg=$version") >"$log" 2>&1 ||
			{ cat "$log" >&2; die "apt-get download $pkg=$version failed"; }
		rm -f "$log"
		deb=$(first_file "$dir"/"${pkg}"_*.deb)
		[[ -n "$deb" ]] || die "apt-get download left no .deb for $pkg in $dir"
	fi
	rm -rf "$dir/root"
	mkdir -p "$dir/root"
	if ! dpkg-deb -x "$deb" "$dir/root"; then
		rm -f "$deb"
		die "dpkg-deb -x $deb failed (removed it; run again to download it anew)"
	fi
	src=$(first_file "$dir"/root/boot/vmlinuz-*)
	[[ -n "$src" ]] || die "$deb: no boot/vmlinuz-* inside"
	cp -f "$src" "$dir/vmlinuz"
	magic=$(extract_vmlinux "$dir/vmlinuz" "$dir/vmlinux")
	case "$magic" in
	1f8b*) comp=gzip ;; fd377a*) comp=xz ;; 02214c18*) comp=lz4 ;; 28b52ffd*) comp=zstd ;;
	425a68*) comp=bzip2 ;; 5d0000*) comp=lzma ;; 894c5a*) comp=lzo ;; *) comp=unknown ;;
	esac
	release=$(basename "$src")
	release=${release#vmlinuz-}
	{
		echo "package=$pkg"
		echo "version=$version"
		echo "release=$release"
		echo "deb=$(basename "$deb")"
		echo "deb_sha256=$(sha256sum "$deb" | cut -d' ' -f1)"
		echo "vmlinuz_sha256=$(sha256sum "$dir/vmlinuz" | cut -d' ' -f1)"
		echo "payload_compression=$comp"
		echo "vmlinux_sha256=$(sha256sum "$dir/vmlinux" | cut -d' ' -f1)"
	} >"$manifest.tmp"
	mv -f "$manifest.tmp" "$manifest"
fi

ln -sfn "$version" "$cache_root/current"

echo "$dir"
echo "$dir/vmlinuz"
echo "$dir/vmlinux"
echo "$manifest"
