// UI benchmark (not a test): see README.md.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir, loadavg, cpus } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startServer, startBrowser, ensureUiBuilt } from '../../tests/e2e/lib/harness.js';
import { startTrace, stopTrace, printSummary } from './trace.mjs';
import { cpuWindow, reniceChromium } from './cpu.mjs';

const { values: opt } = parseArgs({
  options: {
    tasks: { type: 'string', default: '2000' },
    'lines-per-s': { type: 'string', default: '500' },
    seconds: { type: 'string', default: '30' },
    dut: { type: 'string', default: 'stb-01' },
    baseline: { type: 'boolean', default: false },
    trace: { type: 'string' },
    stress: { type: 'string', default: '0' },
    renice: { type: 'string' },
  },
});
const TASKS = Number(opt.tasks);
const RATE = Number(opt['lines-per-s']);
const SECONDS = Number(opt.seconds);

/** A pack of TASKS fast tasks plus one task printing RATE lines/s for the whole window. */
function makePack(root) {
  const dir = path.join(root, 'ui-bench');
  mkdirSync(path.join(dir, 'tasks'), { recursive: true });
  const names = [];
  for (let i = 0; i < TASKS; i++) {
    const name = `t${String(i).padStart(4, '0')}`;
    names.push(name);
    writeFileSync(
      path.join(dir, 'tasks', `${name}.yaml`),
      `name: ${name}\ndescription: fast task ${i}\nrun: [sh, -c, "echo ${name} ok"]\nest_task_time: 0.05\nmax_runtime: 30\nprocess_safe: true\nstop_suite_on_fail: false\n`,
    );
  }
  writeFileSync(
    path.join(dir, 'tasks', 'logger.py'),
    `import time\nrate, secs = ${RATE}, ${SECONDS + 30}\nt0 = time.time(); n = 0\nwhile time.time() - t0 < secs:\n    n += 1\n    print(f"{time.time():.3f} line {n} " + "x" * 60, flush=(n % 25 == 0))\n    time.sleep(max(0.0, t0 + n / rate - time.time()))\n`,
  );
  writeFileSync(
    path.join(dir, 'tasks', 'logger.yaml'),
    `name: logger\ndescription: prints ${RATE} lines/s\nrun: [python3, logger.py]\nest_task_time: ${SECONDS}\nmax_runtime: ${SECONDS + 120}\nprocess_safe: true\npriority: 1\nstop_suite_on_fail: false\n`,
  );
  writeFileSync(
    path.join(dir, 'pack.yaml'),
    `name: ui-bench\nversion: 1.0.0\ndescription: ${TASKS} fast tasks and one chatty logger\nparams:\n  process_limit: 8\n  resource_mode: per_task_separate\ngroups:\n  all:\n    tests: [logger, ${names.join(', ')}]\n`,
  );
}

async function api(server, request) {
  const res = await fetch(`${server.origin}/api`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request),
  });
  const body = await res.json();
  if (body?.error) throw new Error(`${request.cmd}: ${body.error.message}`);
  return body.data;
}

const pct = (xs, p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : 0);

/** Observers installed before the page's own code: long tasks, event timing, timer lag. */
function instrument() {
  window.__bench = { long: [], longAt: [], events: [], lag: [], loaf: [] };
  try {
    // Long animation frames name the script behind a slow frame (Chromium).
    new PerformanceObserver((l) => {
      for (const e of l.getEntries())
        if (e.blockingDuration > 0)
          window.__bench.loaf.push({
            duration: e.duration,
            blocking: e.blockingDuration,
            scripts: (e.scripts ?? []).map((x) => `${x.invoker} ${x.sourceFunctionName || ''} ${Math.round(x.duration)}ms`).slice(0, 3),
          });
    }).observe({ type: 'long-animation-frame', buffered: true });
  } catch {}
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) {
      window.__bench.long.push(e.duration);
      window.__bench.longAt.push(e.startTime);
    }
  }).observe({ type: 'longtask', buffered: true });
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) if (e.interactionId) window.__bench.events.push(e.duration);
  }).observe({ type: 'event', durationThreshold: 16, buffered: true });
  let last = performance.now();
  setInterval(() => {
    const t = performance.now();
    window.__bench.lag.push(t - last - 100);
    last = t;
  }, 100);
}

/**
 * Launch one run of the pack and watch it for SECONDS on `screen`: `live` (the run's Live
 * screen, the logger's log followed) or `packs` (a quiet screen: the machine's noise floor
 * while the same run goes).
 */
async function measure(server, page, screen) {
  const { run_id } = await api(server, { cmd: 'launch', pack: 'ui-bench', groups: ['all'], duts: [opt.dut] });
  stream.frames = 0;
  stream.events = 0;
  stream.kinds = {};
  stream.missed = 0;
  let scrollBox;
  let clickBox;
  if (screen === 'live') {
    await page.goto(`${server.origin}/#/live/${encodeURIComponent(run_id)}`);
    const logger = page.locator('[data-testid=task-table] [data-task=logger]');
    await logger.waitFor({ timeout: 30_000 });
    await logger.click();
    scrollBox = await page.locator('[data-testid=task-table]').boundingBox();
    clickBox = await page.locator('[data-testid=run-id]').boundingBox();
  } else {
    await page.goto(`${server.origin}/#/packs/ui-bench`);
    await page.locator('[data-testid=tasks-table]').waitFor({ timeout: 30_000 });
    scrollBox = await page.locator('[data-testid=pack-detail]').boundingBox();
    clickBox = await page.locator('h1').first().boundingBox();
  }
  // Forget page-load work: measure the steady state while the run goes.
  await page.evaluate(() => {
    for (const k of ['long', 'longAt', 'events', 'lag', 'loaf']) window.__bench[k].length = 0;
  });
  let cdp = null;
  if (process.env.BENCH_PROFILE) {
    cdp = await page.context().newCDPSession(page);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 500 });
    await cdp.send('Profiler.start');
  }
  let tracer = null;
  let markAt = null;
  if (opt.trace) {
    tracer = await page.context().newCDPSession(page);
    await startTrace(tracer);
    // A mark in the trace at a known page time lines the Long Tasks entries up with the trace.
    markAt = await page.evaluate(() => performance.mark('bench-trace').startTime);
  }
  // Busy loops competing for the CPUs, like other builds on a shared machine.
  for (let i = 0; i < Number(opt.stress); i++) hogs.push(spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  // An experiment, not a setting to keep: Chromium's threads ahead of the rest in the CPU queue.
  if (opt.renice != null) console.log(`  Chromium's ${reniceChromium(Number(opt.renice))} threads set to nice ${opt.renice}`);
  const load0 = loadavg()[0];
  const cpu = cpuWindow();
  stream.on = true;
  const t0 = Date.now();
  let inputs = 0;
  while (Date.now() - t0 < SECONDS * 1000) {
    // Real input through CDP that leaves the selected task alone: scroll, click a
    // neutral spot, press a key.
    await page.mouse.move(scrollBox.x + 200, scrollBox.y + 100);
    await page.mouse.wheel(0, inputs % 2 ? 400 : -300);
    await page.mouse.click(clickBox.x + clickBox.width + 40, clickBox.y + clickBox.height / 2);
    await page.keyboard.press('Shift');
    inputs++;
    await page.waitForTimeout(250);
  }
  stream.on = false;
  const used = cpu.end();
  stopHogs();
  // The page's figures before a profile or trace is collected (collecting is work of its own).
  const b = await page.evaluate(() => window.__bench);
  const { frames, events, missed } = stream;
  if (cdp) {
    // Self time per function, from a sampled CPU profile of the watch window.
    const { profile } = await cdp.send('Profiler.stop');
    const self = new Map();
    const dt = (profile.endTime - profile.startTime) / profile.samples.length / 1000;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    for (const id of profile.samples) {
      const f = byId.get(id).callFrame;
      const k = `${f.functionName || '(anon)'} ${f.url.split('/').pop()}:${f.lineNumber}`;
      self.set(k, (self.get(k) ?? 0) + dt);
    }
    for (const [k, ms] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${ms.toFixed(0).padStart(6)} ms  ${k}`);
  }
  const traceEvents = tracer ? await stopTrace(tracer, opt.trace.replace(/(\.json)?$/, `-${screen}.json`)) : null;
  const logLines = screen === 'live' ? await page.locator('.log .meta .num').first().textContent() : '';
  const { run } = await api(server, { cmd: 'get_run', run_id });
  await api(server, { cmd: 'stop_run', run_id }).catch(() => {});
  const maxOf = (xs) => (xs.length ? Math.max(...xs) : 0);
  console.log(`\n[${screen}] run ${run_id}: ${run.counts.done}/${run.counts.total} tasks done in the window${logLines ? `; log view holds ${logLines}` : ''}; load average ${load0.toFixed(1)} → ${loadavg()[0].toFixed(1)}`);
  console.log(`  event stream: ${events} events in ${frames} WebSocket frames (${(events / SECONDS).toFixed(0)} events/s): ${Object.entries(stream.kinds).map(([k, n]) => `${k} ${n}`).join(', ')}${missed ? ` (the resyncs say ${missed} events were lost)` : ''}`);
  console.log(`  long tasks (>50 ms): ${b.long.length}, max ${maxOf(b.long).toFixed(0)} ms`);
  console.log(`  CPU in the window: machine ${(used.busy * 100).toFixed(0)}% busy, ${(used.steal * 100).toFixed(1)}% stolen by the host (${cpus().length} CPUs); s by process: ${used.by.slice(0, 9).map(([g, s]) => `${g} ${s.toFixed(1)}`).join(', ')}`);
  if (used.main)
    console.log(`  renderer main thread (schedstat): ${used.main.run.toFixed(2)} s on a CPU, ${used.main.wait.toFixed(2)} s runnable but waiting for one, ${used.main.slices} times scheduled`);
  console.log(`  input latency (Event Timing, ${inputs * 3} inputs; ${b.events.length} events took over 16 ms): p50 ${pct(b.events, 50).toFixed(0)} ms, p95 ${pct(b.events, 95).toFixed(0)} ms, max ${maxOf(b.events).toFixed(0)} ms`);
  console.log(`  timer lag (100 ms interval): p95 ${pct(b.lag, 95).toFixed(0)} ms, max ${maxOf(b.lag).toFixed(0)} ms`);
  if (process.env.BENCH_VERBOSE)
    for (const f of b.loaf.sort((x, y) => y.blocking - x.blocking).slice(0, 6))
      console.log(`    slow frame ${f.duration.toFixed(0)} ms (blocking ${f.blocking.toFixed(0)} ms): ${f.scripts.join(' | ')}`);
  if (traceEvents) printSummary(traceEvents, { markAt, longTasks: b.long.map((d, i) => ({ ms: d, at: b.longAt[i] })) });
}

const hogs = [];
function stopHogs() {
  for (const h of hogs.splice(0)) h.kill('SIGKILL');
}
process.on('exit', stopHogs);

/** What the page's event stream delivers while a screen is watched. */
const stream = { on: false, frames: 0, events: 0, kinds: {}, missed: 0 };

ensureUiBuilt();
const root = mkdtempSync(path.join(tmpdir(), 'testbay-uibench-'));
makePack(root);
const server = await startServer({ packDirs: [root] });
const browser = await startBrowser();
try {
  await browser.page.addInitScript(instrument);
  browser.page.on('websocket', (ws) =>
    ws.on('framereceived', (f) => {
      if (!stream.on || typeof f.payload !== 'string') return;
      stream.frames++;
      // Top-level events only (`{"kind":..,"data":..}`), named by kind and run event type.
      for (const m of f.payload.matchAll(/"kind":"resync","data":\{"missed":(\d+)/g)) stream.missed += Number(m[1]);
      for (const m of f.payload.matchAll(/\{"kind":"(\w+)","data":(?:\{"type":"(\w+)")?/g)) {
        const k = m[2] ? `${m[1]}.${m[2]}` : m[1];
        stream.events++;
        stream.kinds[k] = (stream.kinds[k] ?? 0) + 1;
      }
    }),
  );
  console.log(`${TASKS + 1} tasks per run, the logger at ${RATE} lines/s, ${SECONDS} s watched per screen, ${cpus().length} CPUs${Number(opt.stress) ? `, ${opt.stress} busy loops beside it` : ''}; UI from ${process.env.TESTBAY_UI_DIR || 'ui/dist'}`);
  if (opt.baseline) await measure(server, browser.page, 'packs');
  await measure(server, browser.page, 'live');
} finally {
  await browser.close();
  await server.stop();
  rmSync(root, { recursive: true, force: true });
}
