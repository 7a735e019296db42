import { describe, expect, it } from 'vitest';
import { checkServerUrl } from './labUrl';

describe('checkServerUrl', () => {
  it('takes an http address or a bare host:port', () => {
    expect(checkServerUrl('http://lab-pc:7780')).toBeNull();
    expect(checkServerUrl('  lab-pc:7780 ')).toBeNull();
    expect(checkServerUrl('http://10.0.0.5:7780/?token=abc')).toBeNull();
  });
  it('says what is wrong otherwise', () => {
    expect(checkServerUrl('')).toMatch(/address/);
    expect(checkServerUrl('https://lab:7780')).toMatch(/https is not supported/);
    expect(checkServerUrl('ftp://lab')).toMatch(/http:\/\//);
  });
});
