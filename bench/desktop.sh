#!/usr/bin/env bash
# Desktop app benchmark: time to a loaded first page and idle memory.
#   bench/desktop.sh            uses the debug build (what scripts/test builds)
#   PROFILE=release bench/desktop.sh
# Runs under Xvfb when there is no display. Targets: idle RSS <= 150 MiB, first paint <= 1.5 s.
#
# Time to first paint: from spawning the process to the webview's "page loaded" event
# (logged by the app on PageLoadEvent::Finished; the UI's first frame is painted by then,
# its data arrives over IPC right after).
# Memory: the app process plus every WebKit helper it starts (WebKitWebProcess,
# WebKitNetworkProcess), 5 s after the page loaded, with nothing happening. RSS counts
# shared libraries once per process; PSS divides them among the processes sharing them,
# so the PSS sum is what the app really costs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/testbay/target}"
profile="${PROFILE:-debug}"
app="$CARGO_TARGET_DIR/$profile/testbay-desktop"
runs="${RUNS:-3}"

if [ -z "${DISPLAY:-}" ]; then
    exec xvfb-run -a -s "-screen 0 1440x900x24" "$0" "$@"
fi
if [ ! -x "$app" ]; then
    flag=""; [ "$profile" = release ] && flag="--release"
    (cd "$root/ui" && npm run --silent build -- --logLevel warn)
    cargo build --quiet -p testbay-desktop $flag
fi

python3 - "$app" "$runs" "$root" <<'EOF'
import os, re, subprocess, sys, tempfile, time, statistics

app, runs, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def children(pid):
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open(f'/proc/{d}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except OSError:
                pass
    return out

def tree(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(children(p))
    return seen

def kib(pid, path, key):
    try:
        with open(f'/proc/{pid}/{path}') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def name(pid):
    try:
        with open(f'/proc/{pid}/comm') as f:
            return f.read().strip()
    except OSError:
        return '?'

paint, rss, pss = [], [], []
for i in range(runs):
    data = tempfile.mkdtemp(prefix='testbay-bench-')
    env = dict(os.environ, TESTBAY_DATA_DIR=data, TESTBAY_PACKS=f'{root}/packs',
               TESTBAY_LAB=f'{root}/lab/demo-lab.yaml', RUST_LOG='testbay_desktop::startup=info,warn',
               NO_COLOR='1')
    t0 = time.monotonic()
    p = subprocess.Popen([app], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    loaded = None
    while True:
        line = p.stderr.readline()
        if not line:
            sys.exit(f'app exited before loading its page (exit {p.wait()})')
        if 'page loaded' in line:
            loaded = time.monotonic() - t0
            break
    time.sleep(5)
    procs = tree(p.pid)
    r = sum(kib(q, 'status', 'VmRSS') for q in procs)
    s = sum(kib(q, 'smaps_rollup', 'Pss') for q in procs)
    detail = ', '.join(f'{name(q)} {kib(q, "status", "VmRSS") // 1024}' for q in procs)
    print(f'run {i + 1}: page loaded {loaded * 1000:.0f} ms; idle RSS {r / 1024:.0f} MiB, PSS {s / 1024:.0f} MiB '
          f'over {len(procs)} processes ({detail} MiB RSS)')
    paint.append(loaded * 1000); rss.append(r / 1024); pss.append(s / 1024)
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
    subprocess.run(['rm', '-rf', data])

print(f'median of {runs}: time to first page {statistics.median(paint):.0f} ms (target <= 1500); '
      f'idle RSS {statistics.median(rss):.0f} MiB, PSS {statistics.median(pss):.0f} MiB, '
      f'app + WebKit processes (target <= 150 MiB)')
EOF
