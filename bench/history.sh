#!/usr/bin/env bash
# History at scale: builds a SQLite store of RUNS runs x TASKS task results (each with 2
# sub-results and 3 measurements; one task in 20 flips) through the store's own insert
# path, then prints the ingest rate, the database size and the server-side median (and
# worst) of CALLS calls of each query: the runs listing (first page, pack + DUT + failed
# only + text, result=Failed, sort=failures, last page), one run's detail, a task's
# history, a measurement's history, yield, the flaky list, a run's tasks and a compare of
# two 100-task runs. Prints figures; asserts nothing.
#   bench/history.sh                        # 1,000 runs x 100 tasks, debug build
#   RUNS=10000 PROFILE=release bench/history.sh   # the 1,000,000 results of issue 13
#   DIR=/tmp/h1m RUNS=10000 bench/history.sh       # keeps the store in DIR; a second call
#                                                  # times the kept store without writing
# The debug build is the default (this machine's rule); its SQLite is unoptimised, so
# its figures are an upper bound of a release build's.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-1000}"
TASKS="${TASKS:-100}"
CALLS="${CALLS:-20}"
PROFILE="${PROFILE:-dev}"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); profile $PROFILE; TMPDIR=${TMPDIR:-/tmp}"
HISTORY_BENCH_DIR="${DIR:-}" HISTORY_BENCH_RUNS="$RUNS" HISTORY_BENCH_TASKS="$TASKS" HISTORY_BENCH_CALLS="$CALLS" \
  cargo bench -q -p testbay-engine --profile "$PROFILE" --bench history
