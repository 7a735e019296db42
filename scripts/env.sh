# Common environment of scripts/console and scripts/test (sourced, not run).
# shellcheck shell=bash

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

# Build output lives outside the clone unless CARGO_TARGET_DIR says otherwise, so fresh
# clones (CI checks out a new one every time) reuse what an earlier build compiled. Cargo
# fingerprints by path and content, so sharing it between clones is safe.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/testbay/target}"
testbay_bin="$CARGO_TARGET_DIR/debug/testbay"
desktop_bin="$CARGO_TARGET_DIR/debug/testbay-desktop"

step() { printf '\n==> %s\n' "$*" >&2; }

# Build ui/dist (the UI both the desktop app and `testbay serve` show).
build_ui() {
    (cd "$root/ui" && npm run --silent build -- --logLevel warn)
}
