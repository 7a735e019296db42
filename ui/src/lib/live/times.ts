/**
 * A live run's times as they are now, between events: elapsed counts up and the ETA
 * down from what the console last said, on this page's clock; a run that is over shows
 * its duration, which stands still.
 */
import type { Progress } from '../api/types';

export interface Timed {
  progress: Progress;
  /** This page's clock (ms) when `progress` came in. */
  progressAt: number;
  /** The run is going (its times move). */
  active: boolean;
  /** When the run started and ended (console time); a run that is over has an end. */
  started_ms: number;
  ended_ms: number | null;
}

export function liveTimes(t: Timed, now: number): { elapsedMs: number; etaMs: number | null } {
  if (!t.active) {
    const elapsedMs = t.ended_ms != null ? t.ended_ms - t.started_ms : t.progress.elapsed_ms;
    return { elapsedMs: Math.max(0, elapsedMs), etaMs: null };
  }
  const since = Math.max(0, now - t.progressAt);
  const eta = t.progress.eta_ms;
  return {
    elapsedMs: Math.max(0, t.progress.elapsed_ms + since),
    etaMs: eta == null ? null : Math.max(0, eta - since),
  };
}

/**
 * A wait reason with its "retry in Ns" counted down from when the reason came in:
 * `stalled, retry in 2697s` read 10 s later says `retry in 2687s`.
 */
export function tickReason(reason: string, since_ms: number): string {
  return reason.replace(/retry in (\d+(?:\.\d+)?)s/g, (_, n: string) => {
    const left = Math.max(0, Math.round(Number(n) - since_ms / 1000));
    return `retry in ${left}s`;
  });
}
