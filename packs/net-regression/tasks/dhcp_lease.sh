#!/bin/sh
set -eu
echo "DHCPDISCOVER"
sleep 0.2
echo "DHCPOFFER 10.0.0.50"
sleep 0.2
echo "DHCPACK"
printf '{"result": "Passed", "metadata": {"message": "lease 10.0.0.50 for 3600 s", "lease": "10.0.0.50"}}\n' > "${TESTBAY_RESULT:-/dev/stdout}"
