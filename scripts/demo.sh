#!/usr/bin/env bash
# Boots the bundled test guest with chsnap, talks to it over its serial
# console, and powers it off. Run through `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
chsnap=bin/chsnap
[ -x "$chsnap" ] || { echo "demo: $chsnap is missing; run make build" >&2; exit 1; }

coproc GUEST { exec "$chsnap" run --cpus 2 --memory 512M 2>&1; }
trap 'kill "${GUEST_PID:-0}" 2>/dev/null || true' EXIT

expect() { # expect REGEX: print guest lines until one matches (30 s limit)
  local line
  while IFS= read -r -t 30 line <&"${GUEST[0]}"; do
    line=${line%$'\r'}
    printf '  guest| %s\n' "$line"
    [[ $line =~ $1 ]] && return 0
  done
  echo "demo: the guest did not print /$1/ (see above)" >&2
  exit 1
}
say() { printf 'host > %s\n' "$1"; printf '%s\n' "$1" >&"${GUEST[1]}"; }

echo "== booting the test guest: chsnap run --cpus 2 --memory 512M"
start=$(date +%s%N)
expect '^chsnap-guest ready'
echo "== ready after $(( ($(date +%s%N) - start) / 1000000 )) ms"
say cpus;          expect '^cpus '
say "fill 64 42";  expect '^fill '
say verify;        expect '^verify '
say ticks;         expect '^ticks '
say poweroff
wait "$GUEST_PID" && echo "== guest powered off, chsnap exited 0"
