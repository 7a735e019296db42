import { describe, expect, it } from 'vitest';
import { lastVerdicts, passRate } from './verdict';

describe('pass rate over runs', () => {
  it('counts runs that passed among finished runs, stopped ones left out', () => {
    const runs = [
      { verdict: 'passed' as const },
      { verdict: 'failed' as const },
      { verdict: 'errored' as const },
      { verdict: 'stopped' as const },
      { verdict: 'passed' as const },
      { verdict: null },
    ];
    expect(passRate(runs)).toEqual({ passed: 2, counted: 4, rate: 0.5 });
    expect(passRate([{ verdict: 'stopped' }, { verdict: null }])).toBeNull();
  });

  it('keeps the last runs with a verdict, oldest first', () => {
    const r = (created_ms: number, verdict: 'passed' | 'failed' | null) => ({ created_ms, verdict });
    expect(lastVerdicts([r(3, 'failed'), r(1, 'passed'), r(2, null), r(4, 'passed')], 2)).toEqual([r(3, 'failed'), r(4, 'passed')]);
  });
});
