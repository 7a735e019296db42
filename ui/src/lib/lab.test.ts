import { describe, expect, it } from 'vitest';
import { openedDut, runsOn } from './lab';
import type { Dut, LabView } from './api/client';

const dut = (name: string): Dut => ({
  name, description: '', serial: `S-${name}`, model: 'TP-4000', manufacturer: 'Acme', hardware_version: '1', type: 'stb', tags: [], location: null, offline: false,
});
const slot = (n: number, name: string | null) => ({ slot: n, dut: name, model: null, state: 'free' as const, holder: null, until: null, waiting: 0 });

const lab = {
  duts: [dut('stb-01'), dut('stb-02'), dut('spare')],
  racks: [
    { name: 'rack-a', description: '', slots: [slot(1, 'stb-01'), slot(2, null)] },
    { name: 'rack-b', description: '', slots: [slot(1, 'stb-02')] },
  ],
} as unknown as Pick<LabView, 'duts' | 'racks'>;

describe('the DUT a Lab route opens', () => {
  it('finds the DUT with its rack and slot', () => {
    const o = openedDut(lab, ['dut', 'stb-02']);
    expect(o?.dut.serial).toBe('S-stb-02');
    expect(o?.rack).toBe('rack-b');
    expect(o?.slot?.slot).toBe(1);
  });
  it('opens a DUT outside every rack without a slot', () => {
    expect(openedDut(lab, ['dut', 'spare'])).toMatchObject({ slot: null, rack: null });
  });
  it('opens nothing for another route, an unknown DUT or no lab', () => {
    expect(openedDut(lab, [])).toBeNull();
    expect(openedDut(lab, ['dut'])).toBeNull();
    expect(openedDut(lab, ['dut', 'stb-99'])).toBeNull();
    expect(openedDut(lab, ['res', 'stb-01'])).toBeNull();
    expect(openedDut(null, ['dut', 'stb-01'])).toBeNull();
  });
});

describe('runs on a DUT', () => {
  it('keeps the runs with a lane on that exact DUT', () => {
    const runs = [
      { id: 'a', duts: [{ name: 'stb-01', model: null, rack: null, slot: null }] },
      { id: 'b', duts: [{ name: 'stb-010', model: null, rack: null, slot: null }] },
      { id: 'c', duts: [{ name: 'stb-02', model: null, rack: null, slot: null }, { name: 'stb-01', model: null, rack: null, slot: null }] },
      { id: 'd', duts: [] },
    ];
    expect(runsOn(runs, 'stb-01').map((r) => r.id)).toEqual(['a', 'c']);
  });
});
