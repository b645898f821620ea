#!/usr/bin/env bash
# make bench-boot: chsnap against QEMU microvm, time from process start to the
# test guest's ready line, 1 and 8 vCPUs, same guest, same run.
#
# Without a usable /dev/kvm on this host, both run inside the nested-KVM guest
# of testdata/nested (QEMU TCG + kvm_amd): the absolute times are those of
# nested KVM, but both VMMs run on the same KVM, so the ratio stays meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
args=("$@")

if kvm_usable; then
  exec go run ./bench/bootbench -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage "${args[@]}"
fi

echo "bench-boot: no usable /dev/kvm here; measuring both VMMs under nested KVM (QEMU TCG + kvm_amd)"
stage=$(mktemp -d /tmp/chsnap-bench.XXXXXX)
trap 'rm -rf "$stage"' EXIT
CGO_ENABLED=0 go build -o "$stage/chsnap" ./cmd/chsnap
CGO_ENABLED=0 go build -o "$stage/bootbench" ./bench/bootbench
cp bin/chsnap-guest.bzImage "$stage/"
./testdata/nested/qemu-bundle.sh "$stage" >/dev/null
./testdata/nested/run-in-kvm.sh -d "$stage" "$stage/bootbench" -chsnap /work/chsnap \
  -guest /work/chsnap-guest.bzImage -qemu /work/qemu "${args[@]}"
