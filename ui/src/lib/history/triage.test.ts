import { describe, expect, it } from 'vitest';
import { byTaskId, issueHref } from './triage';

describe('triage', () => {
  it('follows only http(s) issue links', () => {
    expect(issueHref('https://tracker/LAB-1')).toBe('https://tracker/LAB-1');
    expect(issueHref(' http://x/1 ')).toBe('http://x/1');
    expect(issueHref('javascript:alert(1)')).toBeNull();
    expect(issueHref('LAB-1')).toBeNull();
    expect(issueHref(null)).toBeNull();
  });
  it('indexes failures by task id', () => {
    const f = { task_id: 7, seq: 1, task: 't', lane: null, result: 'Failed', message: null, category: 'product', rule: 'r', issue: null };
    expect(byTaskId([f]).get(7)?.category).toBe('product');
    expect(byTaskId([f]).get(8)).toBeUndefined();
  });
});
