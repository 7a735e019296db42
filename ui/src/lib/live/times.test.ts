import { describe, expect, it } from 'vitest';
import { liveTimes, tickReason } from './times';

const progress = (elapsed_ms: number, eta_ms: number | null) => ({ done: 1, total: 4, failures: 0, aborted: 0, elapsed_ms, eta_ms });

describe('live times', () => {
  it('count on between events while the run goes', () => {
    const t = { progress: progress(5_000, 20_000), progressAt: 1_000, active: true, started_ms: 0, ended_ms: null };
    expect(liveTimes(t, 1_000)).toEqual({ elapsedMs: 5_000, etaMs: 20_000 });
    expect(liveTimes(t, 4_000)).toEqual({ elapsedMs: 8_000, etaMs: 17_000 });
    expect(liveTimes(t, 100_000).etaMs).toBe(0);
  });

  it('stand still at the run duration once it is over', () => {
    const t = { progress: progress(647_000, null), progressAt: 0, active: false, started_ms: 10_000, ended_ms: 26_000 };
    expect(liveTimes(t, 999_999)).toEqual({ elapsedMs: 16_000, etaMs: null });
  });

  it('counts a retry down', () => {
    expect(tickReason('stalled, retry in 2697s', 10_000)).toBe('stalled, retry in 2687s');
    expect(tickReason('busy: stb-01 held by mallory, retry in 3s', 9_000)).toBe('busy: stb-01 held by mallory, retry in 0s');
    expect(tickReason('waiting for prereq boot', 5_000)).toBe('waiting for prereq boot');
  });
});
