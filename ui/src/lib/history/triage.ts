/** Failure triage on the UI side: which links may be followed, and a run's triaged failures by task row. */
import type { TriagedFailure } from '../api/types';

/** The issue link of a rule as an href: only http(s) links are followed (a rule's text is an operator's). */
export function issueHref(issue: string | null | undefined): string | null {
  if (!issue) return null;
  return /^https?:\/\//i.test(issue.trim()) ? issue.trim() : null;
}

/** A run's failures (`run_triage`) by task occurrence id. */
export function byTaskId(rows: TriagedFailure[]): Map<number, TriagedFailure> {
  return new Map(rows.map((f) => [f.task_id, f]));
}
