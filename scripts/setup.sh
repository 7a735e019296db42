#!/usr/bin/env bash
# Install what building and testing Testbay needs on Debian 12, then the npm packages.
# Idempotent and quiet: every step checks first and does nothing when already done.
#   - Debian packages for Tauri (GTK, WebKitGTK), the desktop test (WebKitWebDriver, Xvfb)
#     and the browser tests (Chromium), and PostgreSQL (the lab store; tests start a
#     throwaway cluster with crates/pgtest). Never downloads a browser of its own.
#   - tauri-driver (cargo install) for the desktop test.
#   - `npm ci` in ui/, tests/e2e/ and tests/desktop/ when node_modules is missing or was
#     installed from a different package-lock.json.
# Sourced by scripts/console and scripts/test; also runnable on its own.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

debian_packages=(
    libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev libayatana-appindicator3-dev
    libsoup-3.0-dev webkit2gtk-driver chromium xvfb xauth python3 postgresql
)

missing=()
for p in "${debian_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v tauri-driver >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
    say "installing tauri-driver"
    # Its own target dir: a shared CARGO_TARGET_DIR would mix its lock file's versions
    # with the workspace's and rebuild both.
    CARGO_TARGET_DIR="${TMPDIR:-/tmp}/testbay-tauri-driver" \
        cargo install tauri-driver --locked --quiet
fi

# npm ci when node_modules is missing or was installed from another lock file.
npm_ci() {
    local dir="$1"
    [ -f "$dir/package-lock.json" ] || return 0
    local want have=""
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    [ -f "$dir/node_modules/.testbay-lock-sha256" ] && have="$(cat "$dir/node_modules/.testbay-lock-sha256")"
    if [ "$want" != "$have" ]; then
        say "npm ci in ${dir#"$root"/}"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        echo "$want" >"$dir/node_modules/.testbay-lock-sha256"
    fi
}
for d in ui tests/e2e tests/desktop; do
    npm_ci "$root/$d"
done
