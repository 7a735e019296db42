#!/usr/bin/env bash
# power_on / power_off: no result file, so the exit status decides (0 = Passed).
set -euo pipefail
state="${1:?usage: power.sh on|off}"
echo "power_switch: outlet -> ${state}"
sleep 0.3
if [[ "$state" == "on" ]]; then
  echo "DUT reports standby"
else
  echo "DUT is dark"
fi
