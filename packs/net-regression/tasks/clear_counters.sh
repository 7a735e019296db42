#!/bin/sh
set -eu
for i in eth0 eth1 wan0; do
  echo "clear counters $i"
done
