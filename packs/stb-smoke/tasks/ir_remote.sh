#!/usr/bin/env bash
# Walk the menu tree, one reported section per menu (`testbay report`, on PATH in a
# task; outside Testbay it only warns); exit status decides the result.
set -euo pipefail
report() { testbay report "$@" 2>/dev/null || true; }
for menu in settings guide; do
  report section-start "menu $menu"
  for key in MENU DOWN OK BACK; do
    echo "ir_blaster: ${key}"
    sleep 0.05
  done
  report section-stop "menu $menu" --result Passed
done
echo "menus respond"
