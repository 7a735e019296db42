#!/usr/bin/env bash
# History at scale: builds a SQLite store of RUNS runs x TASKS task results (each with 2
# sub-results and 3 measurements; one task in 20 flips) through the store's own insert
# path, then prints the ingest rate (and, beside it, SQLite's own rates for the same rows
# on the same schema: in single statements; from Rust in the store's shape; from Rust
# writing each result once, with and without a plan kept: `bench/ceilings.rs`), the
# database size and the server-side median (and worst) of CALLS calls of each query: the
# runs listing (first page, pack + DUT + failed only + text, result=Failed,
# sort=failures, last page), one run's detail, a task's history, a measurement's history,
# yield, the flaky list, a run's tasks and a compare of two 100-task runs. Prints
# figures; asserts nothing.
#   bench/history.sh                        # 1,000 runs x 100 tasks, optimised build
#   RUNS=10000 bench/history.sh             # the 1,000,000 results of issue 13
#   DIR=/tmp/h1m RUNS=10000 bench/history.sh       # keeps the store in DIR; a second call
#                                                  # times the kept store without writing
#   BENCH_PROFILE=dev bench/history.sh      # a debug build (figures are an upper bound)
#   AT_ONCE=1 bench/history.sh              # runs one after another (default: 16 side by
#                                           # side, one per DUT, as a lab writes them)
# Benchmarks are judged on an optimised build: the `bench` profile (release settings) is
# the default.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-1000}"
TASKS="${TASKS:-100}"
CALLS="${CALLS:-20}"
AT_ONCE="${AT_ONCE:-16}"
PROFILE="${BENCH_PROFILE:-${PROFILE:-bench}}"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); profile $PROFILE; TMPDIR=${TMPDIR:-/tmp}"
HISTORY_BENCH_DIR="${DIR:-}" HISTORY_BENCH_RUNS="$RUNS" HISTORY_BENCH_TASKS="$TASKS" HISTORY_BENCH_CALLS="$CALLS" HISTORY_BENCH_AT_ONCE="$AT_ONCE" \
  cargo bench -q -p testbay-engine --profile "$PROFILE" --bench history
