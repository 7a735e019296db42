import { describe, expect, it } from 'vitest';
import { checkParam, checkParams, launchBlocker, paramKind, parseList, serverParamErrors } from './validate';

describe('launch parameter checks', () => {
  it('takes the kind from the default', () => {
    expect(paramKind([101, 102])).toBe('numbers');
    expect(paramKind(['Passed'])).toBe('strings');
    expect(paramKind([])).toBe('list');
    expect(paramKind(8)).toBe('number');
    expect(paramKind(null)).toBe('any');
  });

  it('reads a list of numbers as typed, or the text itself when a part is no number', () => {
    expect(parseList('101, 102', 'numbers')).toEqual([101, 102]);
    expect(parseList('101, abc', 'numbers')).toBe('101, abc');
    expect(parseList(', abc', 'numbers')).toBe(', abc');
    expect(parseList('', 'numbers')).toEqual([]);
    expect(parseList('a, b', 'strings')).toEqual(['a', 'b']);
  });

  it('refuses what the engine refuses', () => {
    expect(checkParam('channel_list', [101], '101, abc')).toMatch(/numbers/);
    expect(checkParam('channel_list', [101], [101, 102])).toBeNull();
    expect(checkParam('slow_seconds', 8, NaN)).toBe('needs a number');
    expect(checkParam('slow_seconds', 8, null)).toBe('needs a number');
    expect(checkParam('slow_seconds', 8, 0.5)).toBeNull();
    expect(checkParam('valid_result', ['Passed'], [])).toMatch(/at least one/);
    expect(checkParam('firmware', '4.2', '')).toBeNull();
    expect(checkParam('anything', null, [1, 'x'])).toBeNull();
    expect(checkParams([{ key: 'a', value: 1 }, { key: 'b', value: true }], { a: NaN, b: true })).toEqual({ a: 'needs a number' });
  });

  it('places the server diagnostics on their fields', () => {
    const d = (key_path: string | null, message: string) => ({ file: 'launch', line: null, column: null, key_path, message });
    expect(serverParamErrors([d('params.process_limit', 'too small'), d('params', 'x'), d('params.channel_list[1]', 'nan')])).toEqual({
      process_limit: 'too small',
      channel_list: 'nan',
    });
  });

  it('says why Launch is disabled', () => {
    const ok = { pack: true, groups: 1, duts: 1, paramErrors: {}, launching: false };
    expect(launchBlocker(ok)).toBeNull();
    expect(launchBlocker({ ...ok, duts: 0 })).toBe('Choose at least one DUT');
    expect(launchBlocker({ ...ok, groups: 0 })).toBe('Choose at least one group');
    expect(launchBlocker({ ...ok, paramErrors: { channel_list: 'x' } })).toBe('Fix parameter channel_list');
  });
});
