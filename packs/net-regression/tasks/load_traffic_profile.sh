#!/usr/bin/env bash
set -euo pipefail
echo "traffic_gen: loading profile imix"
sleep 0.3
echo "traffic_gen: 4 streams ready"
