/** Formatting helpers: durations, times, result colours. */

export function dur(seconds: number | null | undefined): string {
  if (seconds == null || !isFinite(seconds)) return '–';
  if (seconds < 9.95) return `${Math.max(0, seconds).toFixed(1)}s`;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, '0')}m`;
}

/** File size: `512 B`, `3.4 KiB`, `12 MiB`. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function time(ms: number | null | undefined): string {
  if (ms == null) return '–';
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function clock(ms: number | null | undefined): string {
  if (ms == null) return '–';
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Pill colour class for a result name, task state or run status (display only). */
export function tone(v: string | null | undefined): string {
  switch ((v ?? '').toLowerCase()) {
    case 'passed':
    case 'completed':
    case 'ok':
    case 'free':
      return 'ok';
    case 'failed':
    case 'errored':
    case 'timeout':
    case 'could_not_start':
    case 'broken':
    case 'offline':
    case 'interrupted':
      return 'bad';
    case 'blocked':
    case 'stalled':
    case 'stopped':
    case 'aborted':
    case 'held':
    case 'waiting':
    case 'delayed':
      return 'warn';
    case 'running':
    case 'in_use':
    case 'claimed':
      return 'run';
    case 'queued':
    case 'pending':
    case 'reserved':
    case 'pre_reserved':
      return 'info';
    default:
      return '';
  }
}

/**
 * Pill colour class for a run's lifecycle status: `completed` says only that the run went
 * to its end, not that it passed (its verdict says that), so it is not green.
 */
export function statusTone(v: string | null | undefined): string {
  return v === 'completed' ? 'neutral' : tone(v);
}

export function label(v: string | null | undefined): string {
  return (v ?? '').replace(/_/g, ' ');
}
