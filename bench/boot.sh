#!/usr/bin/env bash
# make bench-boot: chsnap against QEMU microvm, time from process start to the
# test guest's ready line, 1 and 8 vCPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/bootbench -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage "$@"
