import { describe, expect, it } from 'vitest';
import type { PromptView, RunEvent } from '../api/types';
import { LivePrompts } from './prompts';

const p = (id: number, extra: Partial<PromptView> = {}): PromptView => ({
  id, run_id: 'r', task: 't', lane: 'local', item: 0, phase: 'main', message: 'Plug in HDMI',
  choices: [], pattern: null, timeout_s: 60, asked_ms: 0, ...extra,
});

describe('LivePrompts', () => {
  it('follows prompt events and the console list', () => {
    const s = new LivePrompts();
    s.load([p(2)]);
    const ev: RunEvent = { type: 'prompt', run_id: 'r', seq: 1, item: 0, task: 't', lane: 'local', prompt: p(1), ts: 0 };
    expect(s.apply(ev)).toBe(true);
    expect(s.list().map((x) => x.id)).toEqual([1, 2]);
    const done: RunEvent = {
      type: 'prompt_answered', run_id: 'r', seq: 2, item: 0, task: 't', lane: 'local', id: 2,
      answer: { text: '', by: null, at_ms: 0, timed_out: true }, ts: 0,
    };
    expect(s.apply(done)).toBe(true);
    expect(s.list().map((x) => x.id)).toEqual([1]);
  });

  it('keeps what events said while a list request was on its way', () => {
    const s = new LivePrompts();
    s.load([p(1)]);
    s.begin();
    s.apply({ type: 'prompt', run_id: 'r', seq: 1, item: 0, task: 't', lane: 'local', prompt: p(3), ts: 0 });
    s.apply({
      type: 'prompt_answered', run_id: 'r', seq: 2, item: 0, task: 't', lane: 'local', id: 1,
      answer: { text: 'ok', by: null, at_ms: 0, timed_out: false }, ts: 0,
    });
    // The list was read before both events: it still has 1 and not yet 3.
    s.load([p(1), p(2)]);
    expect(s.list().map((x) => x.id)).toEqual([2, 3]);
    // A later list is the truth again.
    s.begin();
    s.load([p(2)]);
    expect(s.list().map((x) => x.id)).toEqual([2]);
  });

  it('checks an answer against choices or the pattern', () => {
    expect(LivePrompts.check(p(1, { choices: ['ok', 'fail'] }), 'maybe')).toBe('choose one of: ok, fail');
    expect(LivePrompts.check(p(1, { choices: ['ok'] }), 'ok')).toBeNull();
    expect(LivePrompts.check(p(1, { pattern: 'SN[0-9]+' }), 'SN12')).toBeNull();
    expect(LivePrompts.check(p(1, { pattern: 'SN[0-9]+' }), 'xSN12')).toContain('must match');
  });
});
