import { describe, expect, it } from 'vitest';
import type { AuditEntry } from './api/types';
import { filterAudit, sinceOf, sortAudit } from './audit';

const e = (id: number, user: string, action: string, target: string, detail = '{}'): AuditEntry => ({
  id,
  time_ms: id * 1000,
  user,
  action,
  target,
  detail,
});

const log = [e(1, 'otto', 'launch', 'run-b'), e(2, 'vera', 'hold', 'stb-01', '{"duration_s":600}'), e(3, 'ada', 'add_user', 'nina')];

describe('audit', () => {
  it('filters on every word, in any column, any case', () => {
    expect(filterAudit(log, '').map((x) => x.id)).toEqual([1, 2, 3]);
    expect(filterAudit(log, 'OTTO').map((x) => x.id)).toEqual([1]);
    expect(filterAudit(log, 'hold 600').map((x) => x.id)).toEqual([2]);
    expect(filterAudit(log, 'hold nina')).toEqual([]);
  });

  it('sorts by time, user, action or target', () => {
    expect(sortAudit(log, { key: 'time', desc: true }).map((x) => x.id)).toEqual([3, 2, 1]);
    expect(sortAudit(log, { key: 'user', desc: false }).map((x) => x.user)).toEqual(['ada', 'otto', 'vera']);
    expect(sortAudit(log, { key: 'action', desc: false }).map((x) => x.action)).toEqual(['add_user', 'hold', 'launch']);
    expect(sortAudit(log, { key: 'target', desc: true }).map((x) => x.target)).toEqual(['stb-01', 'run-b', 'nina']);
  });

  it('turns a period into a start time', () => {
    expect(sinceOf('1h', 10_000_000)).toBe(10_000_000 - 3_600_000);
    expect(sinceOf('all', 10_000_000)).toBeUndefined();
  });
});
