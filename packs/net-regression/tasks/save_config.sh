#!/bin/sh
set -eu
dir="${TESTBAY_ARTIFACTS:-.}"
mkdir -p "$dir"
cat > "$dir/running-config.txt" <<CFG
hostname testbay-dut
interface eth0
 ip address dhcp
CFG
echo "saved running-config.txt"
