/** The Audit screen's folding of the audit log: a text filter and the sort, without Svelte. */
import type { AuditEntry } from './api/types';
import { sortRows, type SortState } from './sort';

/** Entries whose user, action, target or detail contains every word of `text` (any case). */
export function filterAudit(entries: AuditEntry[], text: string): AuditEntry[] {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return entries;
  return entries.filter((e) => {
    const hay = `${e.user} ${e.action} ${e.target} ${e.detail}`.toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

/** Sort by a column: `time`, `user`, `action` or `target`. */
export function sortAudit(entries: AuditEntry[], s: SortState): AuditEntry[] {
  return sortRows(entries, s, (e, key) =>
    key === 'time' ? e.time_ms : key === 'user' ? e.user : key === 'action' ? e.action : e.target,
  );
}

/** How far back the screen looks: the `since_ms` of a choice, now given. */
export function sinceOf(choice: string, now: number): number | undefined {
  const h = { '1h': 1, '24h': 24, '7d': 24 * 7, '30d': 24 * 30 }[choice];
  return h === undefined ? undefined : now - h * 3_600_000;
}
