#!/usr/bin/env bash
# make bench-block: guest block I/O through virtio-blk, chsnap against QEMU
# microvm: sequential MB/s and 4 KiB random IOPS on raw and qcow2 images,
# same guest, same run (bench/blkbench).
#
# Without a usable /dev/kvm on this host, both run inside the nested-KVM guest
# of testdata/nested (QEMU TCG + kvm_amd), images on its tmpfs: the absolute
# numbers are those of nested KVM, where every exit costs tens of
# microseconds, but both VMMs run on the same KVM, so the ratio stays
# meaningful. The L1 guest gets two vCPUs (NESTED_SMP=2, still one TCG
# thread): with one, QEMU's I/O threads (ioeventfd handler, thread pool)
# wait for the L1 scheduler to preempt the L2 vCPU that spins on the used
# ring, which costs QEMU a factor of 2-3 that a real host with a free core
# would not charge; chsnap serves requests on the vCPU thread and is not
# affected.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
args=("$@")

if kvm_usable; then
  exec go run ./bench/blkbench -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage "${args[@]}"
fi

echo "bench-block: no usable /dev/kvm here; measuring both VMMs under nested KVM (QEMU TCG + kvm_amd)"
command -v qemu-img >/dev/null || { echo "bench-block: qemu-img not found; install qemu-utils" >&2; exit 1; }
stage=$(mktemp -d /tmp/chsnap-bench.XXXXXX)
trap 'rm -rf "$stage"' EXIT
CGO_ENABLED=0 go build -o "$stage/chsnap" ./cmd/chsnap
CGO_ENABLED=0 go build -o "$stage/blkbench" ./bench/blkbench
cp bin/chsnap-guest.bzImage "$stage/"
./testdata/nested/qemu-bundle.sh "$stage" >/dev/null
# qemu-img (images are made inside the nested guest): the binary, the
# libraries ldd names and the loader, run through a wrapper.
bundle_qemu_img "$stage" "$stage/qemu-img"
NESTED_MEM=${NESTED_MEM:-4G} NESTED_SMP=${NESTED_SMP:-2} ./testdata/nested/run-in-kvm.sh -d "$stage" "$stage/blkbench" -chsnap /work/chsnap \
  -guest /work/chsnap-guest.bzImage -qemu /work/qemu -qemu-img /work/qemu-img "${args[@]}"
