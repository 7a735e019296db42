// CPU time per process over a window, from /proc (Linux): who the two cores went to while the
// page was watched. Chromium's processes are named by their `--type`, the console with the
// tasks it ran (their time joins the console's when it reaps them), the rest by command name.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const HZ = 100; // USER_HZ on Linux

function procs() {
  const out = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const f = stat.slice(close + 2).split(' ');
      // Fields after the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14).
      const own = Number(f[11]) + Number(f[12]);
      const reaped = Number(f[13]) + Number(f[14]);
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      out.set(d, { comm, own, reaped, cmd });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

function group(p) {
  if (p.comm === 'chromium' || /chrom/.test(p.comm) || p.cmd.includes('/chromium\0') || p.cmd.startsWith('/usr/lib/chromium')) {
    const m = p.cmd.match(/--type=([\w-]+)/);
    const t = m ? m[1] : 'browser';
    if (t === 'utility' && p.cmd.includes('network')) return 'chromium network';
    return `chromium ${t}`;
  }
  if (p.comm === 'testbay') return 'testbay serve (+ its tasks)';
  return p.comm;
}

function machine() {
  const l = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  const idle = l[3] + l[4];
  // Steal: time the hypervisor ran someone else on our virtual CPUs.
  return { busy: l.reduce((a, b) => a + b, 0) - idle, all: l.reduce((a, b) => a + b, 0), steal: l[7] ?? 0 };
}

/**
 * The main thread of each Chromium renderer: time on a CPU, time runnable but waiting in the
 * run queue, and how many times it was put on a CPU (/proc/TID/schedstat, nanoseconds).
 */
function rendererMains(list) {
  const out = new Map();
  for (const [pid, p] of list) {
    if (!/--type=renderer/.test(p.cmd)) continue;
    try {
      const [run, wait, slices] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
      out.set(pid, { run, wait, slices });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** Start a window; `end()` returns CPU seconds by group and the machine's busy share. */
export function cpuWindow() {
  const a = procs();
  const m0 = machine();
  const r0 = rendererMains(a);
  return {
    end() {
      const b = procs();
      const m1 = machine();
      const r1 = rendererMains(b);
      // The busiest renderer main thread (the page's).
      let main = null;
      for (const [pid, x] of r1) {
        const y = r0.get(pid) ?? { run: 0, wait: 0, slices: 0 };
        const d = { run: (x.run - y.run) / 1e9, wait: (x.wait - y.wait) / 1e9, slices: x.slices - y.slices };
        if (!main || d.run > main.run) main = d;
      }
      const by = new Map();
      for (const [pid, p] of b) {
        const before = a.get(pid);
        // A process that started in the window counts from zero.
        const d = p.own + p.reaped - (before && before.comm === p.comm ? before.own + before.reaped : 0);
        if (d <= 0) continue;
        const g = group(p);
        by.set(g, (by.get(g) ?? 0) + d / HZ);
      }
      const all = Math.max(1, m1.all - m0.all);
      return { by: [...by].sort((x, y) => y[1] - x[1]), busy: (m1.busy - m0.busy) / all, steal: (m1.steal - m0.steal) / all, main };
    },
  };
}

/**
 * Set the nice value of every thread of Chromium's processes (the browser this process
 * started, and all its descendants). An experiment, not a fix: if the long tasks go
 * away when the page's threads win the CPUs, they were waits for a CPU, not page work.
 * Raising priority (n < 0) needs root. Returns the number of threads changed.
 */
export function reniceChromium(n) {
  const parent = new Map();
  let root = null;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
      parent.set(d, ppid);
      if (!root && ppid === String(process.pid) && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('chrom')) root = d;
    } catch {
      // Gone meanwhile.
    }
  }
  if (!root) return 0;
  const inTree = (pid) => {
    for (let p = pid, i = 0; p && p !== '0' && i < 64; p = parent.get(p), i++) if (p === root) return true;
    return false;
  };
  const tids = [];
  for (const pid of parent.keys()) {
    if (!inTree(pid)) continue;
    try {
      tids.push(...readdirSync(`/proc/${pid}/task`));
    } catch {
      // Gone meanwhile.
    }
  }
  const r = spawnSync('renice', ['-n', String(n), '-p', ...tids], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`renice -n ${n} failed (raising priority needs root)`);
  // With autogroup scheduling (one group per session; Chromium starts its own) a thread's
  // nice only orders it within its group: the group's own nice is what competes with others.
  try {
    writeFileSync(`/proc/${root}/autogroup`, String(n));
  } catch {
    // No autogroup scheduling in this kernel.
  }
  return tids.length;
}
