#!/usr/bin/env bash
set -euo pipefail
for part in epg thumbnails apps; do
  echo "clearing ${part} cache"
  sleep 0.1
done
printf '{"result": "Completed", "metadata": {"message": "3 caches cleared"}}\n' > "${TESTBAY_RESULT:-/dev/stdout}"
