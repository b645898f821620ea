# Shell helpers shared by chsnap's scripts; source it, do not run it.

# kvm_usable: true when this host's /dev/kvm exists and opens read-write.
kvm_usable() {
  [ -c /dev/kvm ] || return 1
  { exec 9<>/dev/kvm; } 2>/dev/null || return 1
  exec 9>&-
}

# bundle_qemu_img STAGE WRAPPER: copies this host's qemu-img, the libraries
# ldd names and the loader into STAGE/qemu-img-lib, and writes WRAPPER (a
# path inside STAGE) that runs it there as /work/qemu-img-lib/... — the
# layout testdata/nested/run-in-kvm.sh -d STAGE gives it inside the nested
# guest. Fails when qemu-img is not installed.
bundle_qemu_img() {
  local stage=$1 wrapper=$2 qimg
  qimg=$(command -v qemu-img) || return 1
  mkdir -p "$stage/qemu-img-lib" "$(dirname "$wrapper")"
  cp "$qimg" "$stage/qemu-img-lib/"
  ldd "$qimg" | awk '/=>/ && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' |
    while read -r lib; do cp -L "$lib" "$stage/qemu-img-lib/"; done
  cat >"$wrapper" <<'EOW'
#!/bin/sh
exec /work/qemu-img-lib/ld-linux-x86-64.so.2 --library-path /work/qemu-img-lib /work/qemu-img-lib/qemu-img "$@"
EOW
  chmod 755 "$wrapper"
}
