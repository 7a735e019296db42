import { describe, expect, it } from 'vitest';
import { canPublish, origin, packKey } from './packs';
import type { PackSummary } from './api/types';

function pack(library: PackSummary['library']): PackSummary {
  return {
    name: 'stb',
    version: '2',
    description: '',
    dir: '/d',
    ok: true,
    diagnostics: [],
    content_hash: 'h',
    task_count: 1,
    group_count: 1,
    groups: [],
    library,
  };
}

const mine = { owner: 'otto', private: true, pushed_ms: 1, reference: 'stb@2' };

describe('packs', () => {
  it('keys library versions by NAME@VERSION and disk packs by name', () => {
    expect(packKey(pack(null))).toBe('stb');
    expect(packKey(pack(mine))).toBe('stb@2');
    expect(origin(pack(null))).toBe('disk');
    expect(origin(pack(mine))).toBe('library');
  });

  it('lets the owner and admins publish a private version, nobody a public one', () => {
    const p = pack(mine);
    expect(canPublish(p, { user: 'otto', role: 'operator' })).toBe(true);
    expect(canPublish(p, { user: 'ana', role: 'operator' })).toBe(false);
    expect(canPublish(p, { user: 'adam', role: 'admin' })).toBe(true);
    expect(canPublish(p, null)).toBe(false);
    expect(canPublish(pack({ ...mine, private: false }), { user: 'otto', role: 'operator' })).toBe(false);
    expect(canPublish(pack(null), { user: null, role: 'admin' })).toBe(false);
    expect(canPublish(pack({ ...mine, owner: 'local' }), { user: null, role: 'admin' })).toBe(true);
  });
});
