#!/usr/bin/env bash
# make demo: boots the bundled test guest, saves it, kills it, restores it in
# a new process and shows it carrying on. Without a usable /dev/kvm on this
# host, it runs the same demo inside the nested-KVM guest (testdata/nested).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
[ -x bin/chsnap ] || { echo "demo: bin/chsnap is missing; run make build" >&2; exit 1; }
if kvm_usable; then
  exec go run ./scripts/demo -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage
fi
echo "demo: this host has no usable /dev/kvm; running the demo under nested KVM (QEMU TCG + kvm_amd), which takes a minute"
stage=$(mktemp -d /tmp/chsnap-demo.XXXXXX)
trap 'rm -rf "$stage"' EXIT
CGO_ENABLED=0 go build -o "$stage/chsnap" ./cmd/chsnap
CGO_ENABLED=0 go build -o "$stage/demo" ./scripts/demo
cp bin/chsnap-guest.bzImage "$stage/"
NESTED_MEM=${NESTED_MEM:-3G} ./testdata/nested/run-in-kvm.sh -d "$stage" "$stage/demo" -chsnap /work/chsnap -guest /work/chsnap-guest.bzImage
