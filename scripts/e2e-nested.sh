#!/usr/bin/env bash
# Runs chsnap's KVM tests on real KVM when this host has no usable /dev/kvm:
# inside a QEMU TCG guest whose kvm_amd runs on TCG's emulated SVM (see
# testdata/nested/README.md). When /dev/kvm works here, the ordinary test run
# already covered these tests and this script does nothing.
#
# It builds static binaries (chsnap, the e2e tests, the kvmstate tests),
# stages them with the test guest and the Debian kernel fixture, and runs them
# in the nested VM; the exit status is theirs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if [ "${CHSNAP_FORCE_NESTED:-0}" != 1 ] && kvm_usable; then
  echo "e2e-nested: /dev/kvm works on this host; the KVM tests already ran there"
  exit 0
fi
echo "e2e-nested: no usable /dev/kvm here; running the KVM tests under nested KVM (QEMU TCG + kvm_amd)"

kdir="${CHSNAP_CACHE:-$HOME/.cache/chsnap}/kernel/current"
[ -f "$kdir/manifest.txt" ] || ./testdata/kernel/fetch.sh >/dev/null

stage=$(mktemp -d /tmp/chsnap-nested.XXXXXX)
trap 'rm -rf "$stage"' EXIT
export CGO_ENABLED=0
go build -o "$stage/chsnap" ./cmd/chsnap
go test -c -tags e2e -o "$stage/e2e.test" ./e2e
go test -c -o "$stage/kvmstate.test" ./kvmstate
cp testdata/guest/build/guest.bzImage "$stage/chsnap-guest.bzImage"
if [ -d testdata/golden ]; then cp -r testdata/golden "$stage/golden"; fi
# qemu-img, for the disk tests' oracle: the binary, the libraries ldd names
# and the loader, run through a wrapper on the nested PATH.
bundle_qemu_img "$stage" "$stage/bin/qemu-img" || true
mkdir "$stage/kernel"
cp "$kdir/vmlinux" "$kdir/vmlinuz" "$kdir/manifest.txt" "$stage/kernel/"
# TestLinuxNet's initramfs (the kernel's virtio modules, busybox, its /init).
./testdata/linuxnet/build.sh "$stage/kernel/linuxnet.cpio" "$kdir" >/dev/null
{
  printf 'E2E_RUN=%q\n' "${E2E_RUN:-.}"
  printf 'KVMSTATE_RUN=%q\n' "${KVMSTATE_RUN:-.}"
  printf 'E2E_COUNT=%q\n' "${E2E_COUNT:-1}"
  printf 'export CHSNAP_GOLDEN_EMIT=%q\n' "${CHSNAP_GOLDEN_EMIT:-0}"
} >"$stage/run.sh"
cat >>"$stage/run.sh" <<'EOS'
export PATH=/work/bin:$PATH
export CHSNAP_E2E_BIN=/work/chsnap CHSNAP_GUEST=/work/chsnap-guest.bzImage CHSNAP_KERNEL_DIR=/work/kernel CHSNAP_GOLDEN_DIR=/work/golden
rc=0
echo "=== nested: kvmstate tests"
./kvmstate.test -test.v -test.count=1 -test.run "$KVMSTATE_RUN" >/tmp/kvmstate.out 2>&1 || rc=1
cat /tmp/kvmstate.out
echo "=== nested: e2e tests"
./e2e.test -test.v -test.count="$E2E_COUNT" -test.timeout 20m -test.run "$E2E_RUN" >/tmp/e2e.out 2>&1 || rc=1
cat /tmp/e2e.out
passed=$(cat /tmp/kvmstate.out /tmp/e2e.out | grep -c '^--- PASS')
failed=$(cat /tmp/kvmstate.out /tmp/e2e.out | grep -c '^--- FAIL')
skipped=$(cat /tmp/kvmstate.out /tmp/e2e.out | grep -c '^--- SKIP')
[ $rc = 0 ] && echo "nested: PASS" || echo "nested: FAIL"
echo "nested: $passed passed, $failed failed, $skipped skipped"
exit $rc
EOS
NESTED_MEM=${NESTED_MEM:-4G} NESTED_TIMEOUT=${NESTED_TIMEOUT:-1500} ./testdata/nested/run-in-kvm.sh -d "$stage" /bin/busybox sh /work/run.sh
