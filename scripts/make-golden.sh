#!/usr/bin/env bash
# Makes testdata/golden/guest-v1.0.chs: boots the test guest (16 MiB, 1 MiB
# filled) on KVM — nested KVM when this host has none — saves it, and keeps
# the archive. Run it only when the archive format's major version changes:
# every later chsnap must keep restoring the committed file.
set -euo pipefail
cd "$(dirname "$0")/.."
out=testdata/golden/guest-v1.0.chs
mkdir -p testdata/golden
log=$(mktemp)
trap 'rm -f "$log"' EXIT
CHSNAP_FORCE_NESTED=1 CHSNAP_GOLDEN_EMIT=1 E2E_RUN='^TestGoldenArchive$' KVMSTATE_RUN='^$' \
  ./scripts/e2e-nested.sh >"$log" 2>&1 || { tail -40 "$log"; exit 1; }
sed -n '/^GOLDEN-BEGIN$/,/^GOLDEN-END$/p' "$log" | sed '1d;$d' | tr -d '\r' | base64 -d >"$out.new"
mv "$out.new" "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
