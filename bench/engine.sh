#!/usr/bin/env bash
# Engine benchmark: per-task overhead against a bare spawn, `testbay run` start-up time and
# peak RSS of a 100-task run. Prints figures; asserts nothing.
#   N=500 ROUNDS=5 bench/engine.sh
# Each round runs the bare loop and the engine variants back to back; the figures are the
# median over the rounds and the best round, so a busy machine shows as spread. The data
# directory lives under $TMPDIR: creating files costs very different amounts on tmpfs,
# ext4 with a journal and ext4 without one (this VM's /tmp, where creating files right
# after many deletions is slow and varies run to run), so compare them with e.g.
#   TMPDIR=/dev/shm bench/engine.sh
# ROUNDS=9 steadies the medians on a noisy machine.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-500}"
ROUNDS="${ROUNDS:-5}"
TARGET="${CARGO_TARGET_DIR:-target}"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); TMPDIR=${TMPDIR:-/tmp} ($(stat -f -c %T "${TMPDIR:-/tmp}"))"
cargo build --release -q -p testbay-cli --bin testbay
cargo build --release -q -p testbay-engine --example engine_bench
"$TARGET/release/examples/engine_bench" --tasks "$N" --rounds "$ROUNDS" --testbay "$TARGET/release/testbay"

# Peak RSS of the console alone (not its tasks), when GNU time is there.
if [ -x /usr/bin/time ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/p/tasks"
  {
    printf 'name: rss\nversion: "1"\ngroups:\n  all:\n    tests:\n'
    for i in $(seq -w 1 100); do printf '      - t%s\n' "$i"; done
  } > "$tmp/p/pack.yaml"
  for i in $(seq -w 1 100); do printf 'name: t%s\nrun: ["true"]\n' "$i" > "$tmp/p/tasks/t$i.yaml"; done
  /usr/bin/time -v "$TARGET/release/testbay" --data-dir "$tmp/d" run "$tmp/p" > /dev/null 2> "$tmp/time.txt" || true
  grep -E "Maximum resident set size" "$tmp/time.txt" | sed 's/^\s*/testbay run, 100 tasks (GNU time): /'
fi
