import { describe, expect, it } from 'vitest';
import { ApiError, errorOf, toError, unwrap } from './errors';
import { TransportError } from './transport';

describe('API errors', () => {
  const body = {
    code: 'pack_broken',
    message: 'pack stb-smoke has 1 problem',
    diagnostics: [{ file: 'packs/stb-smoke/pack.yaml', line: 3, column: 1, key: 'groups', message: 'unknown task' }],
  };

  it('reads the HTTP shape {"error": ApiError} with its code and diagnostics', () => {
    const e = errorOf({ error: body });
    expect(e).toBeInstanceOf(ApiError);
    expect(e).toMatchObject({ code: 'pack_broken', message: body.message, diagnostics: body.diagnostics });
  });

  it('reads the ApiError Tauri rejects with', () => {
    expect(toError({ code: 'not_found', message: 'no run r1', diagnostics: [] })).toMatchObject({ code: 'not_found', message: 'no run r1' });
  });

  it('a code this UI does not know is internal, with the message kept', () => {
    expect(errorOf({ error: { code: 'brand_new', message: 'something' } })).toMatchObject({ code: 'internal', message: 'something', diagnostics: [] });
  });

  it('a call that never reached the engine is a transport error', () => {
    const e = toError('invalid args `request` for command `dispatch`');
    expect(e).toBeInstanceOf(TransportError);
    expect(e).not.toBeInstanceOf(ApiError);
    expect(e.message).toContain('invalid args');
  });

  it('a response is no error, and its data is what the screens get', () => {
    const res = { cmd: 'run_view', data: { run_id: 'r1' } };
    expect(errorOf(res)).toBeNull();
    expect(unwrap(res)).toEqual({ run_id: 'r1' });
  });
});
