#!/usr/bin/env bash
set -euo pipefail
out="${TESTBAY_ARTIFACTS:-.}"
mkdir -p "$out"
{
  echo "kernel: boot ok"
  echo "middleware: 3 warnings"
  echo "collected at $(date -u +%FT%TZ)"
} > "$out/dut.log"
echo "wrote $(wc -l < "$out/dut.log") lines to dut.log"
