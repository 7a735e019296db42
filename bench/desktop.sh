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
# so the PSS sum is what the app really costs. The target is on the RSS sum.
#   DETAIL=1   also lists each process's biggest mappings (libraries, heap, anonymous)
# For scale, it then measures WebKitGTK's own MiniBrowser (when installed) on about:blank
# the same way, with the same compositing setting the app uses: the engine's floor.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/testbay/target}"
profile="${PROFILE:-debug}"
app="$CARGO_TARGET_DIR/$profile/testbay-desktop"
runs="${RUNS:-3}"

if [ -z "${DISPLAY:-}" ]; then
    exec xvfb-run -a -s "-screen 0 1440x900x24" "$0" "$@"
fi
if [ ! -f "$root/ui/dist/index.html" ]; then
    (cd "$root/ui" && npm run --silent build -- --logLevel warn)
fi
# Always ask cargo (a no-op when up to date) so a stale binary is never measured.
flag=""; [ "$profile" = release ] && flag="--release"
(cd "$root" && cargo build --quiet -p testbay-desktop $flag)

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

def mappings(pid, top=8):
    """The biggest mappings of a process by RSS: [(name, rss KiB, pss KiB)]."""
    agg, cur = {}, None
    try:
        with open(f'/proc/{pid}/smaps') as f:
            for line in f:
                parts = line.split()
                if re.match(r'^[0-9a-f]+-[0-9a-f]+$', parts[0]):
                    cur = os.path.basename(parts[5]) if len(parts) > 5 else '[anonymous]'
                    agg.setdefault(cur, [0, 0])
                elif parts[0] == 'Rss:':
                    agg[cur][0] += int(parts[1])
                elif parts[0] == 'Pss:':
                    agg[cur][1] += int(parts[1])
    except OSError:
        pass
    return sorted(((k, v[0], v[1]) for k, v in agg.items()), key=lambda m: -m[1])[:top]

def measure(procs):
    """RSS and PSS sums (KiB) over `procs`, and a per-process summary."""
    r = sum(kib(q, 'status', 'VmRSS') for q in procs)
    s = sum(kib(q, 'smaps_rollup', 'Pss') for q in procs)
    detail = ', '.join(f'{name(q)} {kib(q, "status", "VmRSS") // 1024}' for q in procs)
    if os.environ.get('DETAIL'):
        for q in procs:
            print(f'  {name(q)} (pid {q}): ' + ', '.join(f'{n} {rk // 1024}/{pk // 1024}' for n, rk, pk in mappings(q))
                  + ' (MiB RSS/PSS)')
    return r, s, detail

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
    r, s, detail = measure(procs)
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

# The engine's floor: WebKitGTK's MiniBrowser showing about:blank, same compositing setting
# as the app (src-tauri/src/main.rs), measured 5 s after start like the app.
mini = '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser'
if os.path.exists(mini):
    env = dict(os.environ)
    env.setdefault('WEBKIT_DISABLE_COMPOSITING_MODE', '1')
    m = subprocess.Popen([mini, 'about:blank'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(6)
    r, s, detail = measure(tree(m.pid))
    print(f'reference, WebKitGTK MiniBrowser on about:blank: idle RSS {r / 1024:.0f} MiB, PSS {s / 1024:.0f} MiB '
          f'({detail} MiB RSS)')
    m.terminate()
    try:
        m.wait(5)
    except subprocess.TimeoutExpired:
        m.kill()
EOF
