#!/usr/bin/env bash
# make bench-snapshot: chsnap against QEMU microvm on a 2 GiB test guest with
# 1 GiB filled by fillmix (half zero, a quarter text, a quarter random pages):
# save time, archive size, restore time to the guest answering, and the host's
# own write/read/zstd/xxhash speed on the same bytes, in the same run.
#
# Without a usable /dev/kvm on this host, everything runs inside the
# nested-KVM guest of testdata/nested (QEMU TCG + kvm_amd), with 8 GiB of L1
# memory (NESTED_MEM) since guest RAM, archives and /tmp all live in it; the
# two 2 GiB guests run one after the other. Absolute times are those of
# nested KVM under TCG; both VMMs and the host limits are measured on the
# same L1, so the ratios stay meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
args=("$@")

if kvm_usable; then
  exec go run ./bench/snapbench -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage "${args[@]}"
fi

echo "bench-snapshot: no usable /dev/kvm here; measuring under nested KVM (QEMU TCG + kvm_amd)"
stage=$(mktemp -d /tmp/chsnap-bench.XXXXXX)
trap 'rm -rf "$stage"' EXIT
CGO_ENABLED=0 go build -o "$stage/chsnap" ./cmd/chsnap
CGO_ENABLED=0 go build -o "$stage/snapbench" ./bench/snapbench
cp bin/chsnap-guest.bzImage "$stage/"
./testdata/nested/qemu-bundle.sh "$stage" >/dev/null
NESTED_MEM=${NESTED_MEM:-8G} NESTED_TIMEOUT=${NESTED_TIMEOUT:-2400} \
  ./testdata/nested/run-in-kvm.sh -d "$stage" "$stage/snapbench" -chsnap /work/chsnap \
  -guest /work/chsnap-guest.bzImage -qemu /work/qemu "${args[@]}"
