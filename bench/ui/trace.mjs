// Chrome trace of a page through CDP, and what each long main-thread task was made of.
//
//   node bench/ui/trace.mjs TRACE.json [--over 50] [--top 8]
//
// prints, for every task over 50 ms on a renderer main thread (what the Long Tasks API
// reports), its duration and the events inside it by self time (script, GC, style, layout,
// paint...), then the same totals over the whole trace. run.mjs records such a trace with
// `--trace FILE`.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

/** Categories that name what the renderer's main thread does: tasks, script, GC, rendering. */
export const CATEGORIES = [
  'toplevel',
  'devtools.timeline',
  'disabled-by-default-devtools.timeline',
  'disabled-by-default-devtools.timeline.frame',
  'blink',
  'blink.user_timing',
  'cc',
  'gpu',
  'loading',
  'v8',
  'v8.execute',
  'disabled-by-default-v8.gc',
];

/** Start tracing on a CDP session (playwright-core `newCDPSession`). */
export async function startTrace(cdp) {
  await cdp.send('Tracing.start', {
    transferMode: 'ReturnAsStream',
    traceConfig: { recordMode: 'recordAsMuchAsPossible', includedCategories: CATEGORIES },
  });
}

/** Stop tracing; returns the trace events (and writes them to `file` when given). */
export async function stopTrace(cdp, file) {
  const done = new Promise((resolve) => cdp.once('Tracing.tracingComplete', resolve));
  await cdp.send('Tracing.end');
  const { stream } = await done;
  const parts = [];
  for (;;) {
    const r = await cdp.send('IO.read', { handle: stream, size: 1 << 22 });
    parts.push(r.base64Encoded ? Buffer.from(r.data, 'base64').toString('utf8') : r.data);
    if (r.eof) break;
  }
  await cdp.send('IO.close', { handle: stream });
  const text = parts.join('');
  if (file) writeFileSync(file, text);
  return parseTrace(text);
}

function parseTrace(text) {
  const j = JSON.parse(text);
  return Array.isArray(j) ? j : j.traceEvents;
}

/** Task wrappers: the top of every main-thread task, whatever this Chromium calls it. */
const TASK_NAMES = new Set(['RunTask', 'ThreadControllerImpl::RunTask', 'ThreadPool_RunTask']);

/**
 * The long tasks of every renderer main thread, each with its self time by event name.
 * Complete events (`X`) and begin/end pairs (`B`/`E`) are both understood.
 */
export function longTasks(events, overMs = 50) {
  const mains = new Set(
    events.filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === 'CrRendererMain').map((e) => `${e.pid}:${e.tid}`),
  );
  // Build [start, end, name] spans per main thread.
  const spans = new Map();
  const open = new Map();
  for (const e of events) {
    const key = `${e.pid}:${e.tid}`;
    if (!mains.has(key)) continue;
    let list = spans.get(key);
    if (!list) spans.set(key, (list = []));
    if (e.ph === 'X' && typeof e.dur === 'number') list.push({ s: e.ts, e: e.ts + e.dur, cpu: e.tdur, name: e.name, args: e.args });
    else if (e.ph === 'B') {
      let st = open.get(key);
      if (!st) open.set(key, (st = []));
      st.push(e);
    } else if (e.ph === 'E') {
      const b = open.get(key)?.pop();
      if (b) list.push({ s: b.ts, e: e.ts, cpu: e.tts != null && b.tts != null ? e.tts - b.tts : undefined, name: b.name, args: b.args });
    }
  }
  const out = [];
  const totals = new Map();
  const busy = { wall: 0, cpu: 0, tasks: 0, frames: 0, frameCpu: 0 };
  const heavy = [];
  for (const [key, list] of spans) {
    // Outer spans first at equal starts, so a parent precedes its children.
    list.sort((a, b) => a.s - b.s || b.e - a.e);
    const tasks = list.filter((x) => TASK_NAMES.has(x.name));
    // Top-level tasks only (a RunTask nested in another is part of it).
    const top = [];
    for (const t of tasks) if (!top.length || t.s >= top[top.length - 1].e) top.push(t);
    let j = 0;
    for (const t of top) {
      while (j < list.length && list[j].s < t.s) j++;
      const inside = [];
      for (let k = j; k < list.length && list[k].s < t.e; k++) if (list[k] !== t && list[k].e <= t.e && !TASK_NAMES.has(list[k].name)) inside.push(list[k]);
      const self = selfTimes(t, inside);
      const ms = (t.e - t.s) / 1000;
      // Thread time: what the task ran on a CPU; the rest of its wall time it waited for one.
      const cpu = t.cpu != null ? t.cpu / 1000 : null;
      busy.wall += ms;
      busy.cpu += cpu ?? 0;
      busy.tasks++;
      if (inside.some((x) => x.name === 'ProxyMain::BeginMainFrame')) {
        // A rendering update (style, layout, paint, commit): a frame of the page.
        busy.frames++;
        busy.frameCpu += cpu ?? 0;
      }
      for (const [name, us] of self) totals.set(name, (totals.get(name) ?? 0) + us);
      if (ms > overMs) out.push({ thread: key, start: t.s, ms, cpu, self, scripts: scriptsOf(inside) });
      else if (cpu != null) {
        // Keep the heaviest tasks by thread time too: the page's own longest work.
        heavy.push({ thread: key, start: t.s, ms, cpu, self, scripts: scriptsOf(inside) });
        heavy.sort((a, b) => b.cpu - a.cpu);
        heavy.length = Math.min(heavy.length, 3);
      }
    }
  }
  return { tasks: out, totals, busy, heavy };
}

/** Self time (µs) by event name inside one task: each span's time minus its children's. */
function selfTimes(task, inside) {
  const self = new Map();
  const stack = [{ s: task.s, e: task.e, name: '(task itself)', child: 0 }];
  const close = (until) => {
    while (stack.length > 1 && stack[stack.length - 1].e <= until) {
      const x = stack.pop();
      self.set(x.name, (self.get(x.name) ?? 0) + (x.e - x.s - x.child));
      stack[stack.length - 1].child += x.e - x.s;
    }
  };
  for (const x of inside) {
    close(x.s);
    stack.push({ s: x.s, e: x.e, name: x.name, child: 0 });
  }
  close(Infinity);
  const root = stack[0];
  self.set(root.name, (self.get(root.name) ?? 0) + (root.e - root.s - root.child));
  return self;
}

/** Script entry points inside a task, with where they are from. */
function scriptsOf(inside) {
  const out = [];
  for (const x of inside) {
    if (x.name !== 'FunctionCall' && x.name !== 'TimerFire' && x.name !== 'EventDispatch' && x.name !== 'FireAnimationFrame') continue;
    const d = x.args?.data ?? {};
    const where = d.functionName || d.type || d.url?.split('/').pop() || '';
    out.push(`${x.name}${where ? ` ${where}` : ''}${d.lineNumber != null ? `:${d.lineNumber}` : ''} ${((x.e - x.s) / 1000).toFixed(0)}ms`);
  }
  return out;
}

/**
 * Print the long tasks and the totals. `longTasks` are the page's Long Tasks API entries
 * (`{ms, at}`, `at` in page time); with the page time `markAt` of a `bench-trace` mark in the
 * trace each is shown at its trace time, to match it with a traced task.
 */
export function printSummary(events, { over = 50, top = 8, longTasks: seen = [], markAt = null } = {}) {
  const { tasks, totals, busy, heavy } = longTasks(events, over);
  let t0 = Infinity;
  for (const e of events) if (e.ts > 0 && e.ts < t0) t0 = e.ts;
  const fmt = (m) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([n, us]) => `${n} ${(us / 1000).toFixed(1)}`)
      .join(', ');
  const mark = events.find((e) => e.name === 'bench-trace' && e.ph !== 'e');
  if (mark && markAt != null && seen.length)
    console.log(`  Long Tasks API entries at trace time: ${seen.map((l) => `${((mark.ts - t0) / 1e6 + (l.at - markAt) / 1000).toFixed(1)} s (${l.ms.toFixed(0)} ms)`).join(', ')}`);
  const onCpu = tasks.filter((t) => t.cpu != null && t.cpu > over).length;
  console.log(`  trace: ${tasks.length} main-thread tasks over ${over} ms wall, ${onCpu} of them over ${over} ms on a CPU (thread time)`);
  const show = (t) => {
    console.log(`    at ${((t.start - t0) / 1e6).toFixed(1)} s: ${t.ms.toFixed(0)} ms wall, ${t.cpu == null ? '?' : t.cpu.toFixed(0)} ms CPU — self ms (wall): ${fmt(t.self)}`);
    if (t.scripts.length) console.log(`      script: ${t.scripts.slice(0, 4).join(' | ')}`);
  };
  tasks.forEach(show);
  const longest = [...tasks, ...heavy].filter((t) => t.cpu != null).sort((a, b) => b.cpu - a.cpu).slice(0, 3);
  if (longest.length) {
    console.log(`  the 3 tasks with the most thread time:`);
    longest.forEach(show);
  }
  console.log(
    `  main thread over the trace: ${busy.tasks} tasks, ${(busy.wall / 1000).toFixed(1)} s wall in tasks, ${(busy.cpu / 1000).toFixed(2)} s CPU; ${busy.frames} rendering updates (main frames), ${(busy.frameCpu / 1000).toFixed(2)} s CPU`,
  );
  console.log(`  main-thread self time over the whole trace (ms wall): ${fmt(totals)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { over: { type: 'string', default: '50' }, top: { type: 'string', default: '8' } } });
  if (!positionals[0]) {
    console.error('usage: node bench/ui/trace.mjs TRACE.json [--over 50] [--top 8]');
    process.exit(2);
  }
  printSummary(parseTrace(readFileSync(positionals[0], 'utf8')), { over: Number(values.over), top: Number(values.top) });
}
