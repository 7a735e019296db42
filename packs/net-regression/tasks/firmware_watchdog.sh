#!/usr/bin/env bash
# With hang_on_purpose: true this never finishes, so max_runtime (3 s) ends it: Timeout.
set -euo pipefail
if [[ -n "${TESTBAY_PARAMS:-}" ]] && grep -Eq '"hang_on_purpose"[[:space:]]*:[[:space:]]*true' "$TESTBAY_PARAMS"; then
  echo "watchdog: no answer, waiting forever (hang_on_purpose)"
  while true; do sleep 1; done
fi
echo "watchdog: kick acknowledged"
sleep 0.2
