#!/bin/sh
# POSIX sh; no result file, so exit status 0 means Passed.
set -eu
echo "sending reset over the console port"
sleep 0.3
echo "router back with default config"
