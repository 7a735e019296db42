// CPU time per process over a window, from /proc (Linux): who the two cores went to while the
// page was watched. Chromium's processes are named by their `--type`, the console with the
// tasks it ran (their time joins the console's when it reaps them), the rest by command name.
import { readdirSync, readFileSync } from 'node:fs';

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
  return { busy: l.reduce((a, b) => a + b, 0) - idle, all: l.reduce((a, b) => a + b, 0) };
}

/** Start a window; `end()` returns CPU seconds by group and the machine's busy share. */
export function cpuWindow() {
  const a = procs();
  const m0 = machine();
  return {
    end() {
      const b = procs();
      const m1 = machine();
      const by = new Map();
      for (const [pid, p] of b) {
        const before = a.get(pid);
        // A process that started in the window counts from zero.
        const d = p.own + p.reaped - (before && before.comm === p.comm ? before.own + before.reaped : 0);
        if (d <= 0) continue;
        const g = group(p);
        by.set(g, (by.get(g) ?? 0) + d / HZ);
      }
      return { by: [...by].sort((x, y) => y[1] - x[1]), busy: (m1.busy - m0.busy) / Math.max(1, m1.all - m0.all) };
    },
  };
}
