/** Run verdicts over a pack's history, pure: its pass rate counts runs, not tasks. */
import type { RunRecord } from './api/client';

/**
 * Share of a pack's finished runs that passed, stopped runs left out (an operator ended
 * them; they neither passed nor failed). Null without such runs.
 */
export function passRate(runs: Pick<RunRecord, 'verdict'>[]): { passed: number; counted: number; rate: number } | null {
  const counted = runs.filter((r) => r.verdict && r.verdict !== 'stopped');
  if (!counted.length) return null;
  const passed = counted.filter((r) => r.verdict === 'passed').length;
  return { passed, counted: counted.length, rate: passed / counted.length };
}

/** The last `n` runs with a verdict, oldest first. */
export function lastVerdicts<T extends Pick<RunRecord, 'verdict' | 'created_ms'>>(runs: T[], n = 20): T[] {
  return runs
    .filter((r) => r.verdict)
    .sort((a, b) => a.created_ms - b.created_ms)
    .slice(-n);
}
