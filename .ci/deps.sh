#!/usr/bin/env bash
# Installs the Debian packages chsnap's build, tests and benchmarks need.
# Idempotent; quiet when everything is already there.
set -euo pipefail
pkgs=(gcc make binutils linux-libc-dev qemu-system-x86 qemu-utils acpica-tools lz4 xz-utils zstd cpio busybox-static iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
