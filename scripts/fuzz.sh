#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each
# (FUZZTIME, default 10s), so CI exercises the decoders beyond their seeds.
set -euo pipefail
fuzztime=${FUZZTIME:-10s}
found=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    found=$((found+1))
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" >/tmp/chsnap-fuzz.log 2>&1 || { cat /tmp/chsnap-fuzz.log; exit 1; }
  done
done
echo "fuzz: $found targets run"
