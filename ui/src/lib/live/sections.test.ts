import { describe, expect, it } from 'vitest';
import type { Measurement, RunEvent, Section } from '../api/types';
import { LiveSections, measurementPassed, sectionMs, storedTree } from './sections';

function sec(id: number, name: string, extra: Partial<Section> = {}): Section {
  return {
    id,
    name,
    message: '',
    started_ms: 1000,
    details: [],
    extra: {},
    measurements: [],
    attachments: [],
    ...extra,
  };
}

function ev(section: Section, run_id = 'r1'): RunEvent {
  return { type: 'section', run_id, seq: 1, item: 0, task: 't', lane: 'local', phase: 'main', section, ts: 0 };
}

describe('LiveSections', () => {
  it('nests sections, replaces a start by its stop and tracks the open path', () => {
    const s = new LiveSections();
    s.select('r1');
    expect(s.apply(ev(sec(0, 'boot')))).toBe(true);
    s.apply(ev(sec(1, 'login', { parent: 0 })));
    expect(s.current(0)).toBe('boot › login');
    s.apply(ev(sec(1, 'login', { parent: 0, result: 'Passed', finished_ms: 1500 })));
    expect(s.current(0)).toBe('boot');
    const tree = s.of(0);
    expect(tree.roots).toHaveLength(1);
    expect(tree.roots[0].children[0].section.result).toBe('Passed');
    expect(sectionMs(tree.roots[0].children[0].section, 9999)).toBe(500);
    expect(sectionMs(tree.roots[0].section, 3000)).toBe(2000);
  });

  it('puts measurements in their section and ignores other runs', () => {
    const s = new LiveSections();
    s.select('r1');
    s.apply(ev(sec(0, 'rf')));
    s.apply({
      type: 'measurement', run_id: 'r1', seq: 2, item: 0, task: 't', lane: 'local', phase: 'main',
      section: 0, measurement: { name: 'snr', value: 12, low: 20 }, passed: false, ts: 0,
    });
    s.apply({
      type: 'measurement', run_id: 'r1', seq: 3, item: 0, task: 't', lane: 'local', phase: 'main',
      section: null, measurement: { name: 'temp', value: 40 }, passed: null, ts: 0,
    });
    expect(s.of(0).roots[0].measurements[0].passed).toBe(false);
    expect(s.of(0).loose[0].measurement.name).toBe('temp');
    expect(s.apply(ev(sec(5, 'x'), 'other'))).toBe(false);
    s.select('r2');
    expect(s.of(0).roots).toHaveLength(0);
  });
});

describe('stored sections (Results)', () => {
  const at = (id: number, name: string, parent?: number, measurements: Measurement[] = []): Section =>
    sec(id, name, { parent, measurements, result: 'Passed' });

  it('nests each phase by parent id and judges measurements as the engine does', () => {
    const snr: Measurement = { name: 'snr_db', value: 4.2, units: 'dB', low: 20, high: 40 };
    const roots = storedTree([
      { phase: 'main', section: at(0, 'scan') },
      { phase: 'main', section: at(1, 'ch 101', 0, [snr]) },
      { phase: 'setup', section: at(0, 'power on') },
    ]);
    expect(roots.map((r) => r.section.name)).toEqual(['scan', 'power on']);
    expect(roots[0].children[0].section.name).toBe('ch 101');
    expect(roots[0].children[0].measurements[0].passed).toBe(false);
  });

  it('applies the comparison rules at their edges', () => {
    const m = (value: number, rest: Partial<Measurement>): Measurement => ({ name: 'x', value, ...rest });
    expect(measurementPassed(m(5, { low: 5, high: 9 }))).toBe(true);
    expect(measurementPassed(m(9, { low: 5, high: 9, comparison: 'GTLT' }))).toBe(false);
    expect(measurementPassed(m(31, { high: 30 }))).toBe(false);
    expect(measurementPassed(m(3, { low: 3, comparison: 'EQ' }))).toBe(true);
    expect(measurementPassed(m(1, { comparison: 'LE' }))).toBe(false);
    expect(measurementPassed(m(1e9, {}))).toBe(null);
  });
});

describe('seeding a screen opened mid-task', () => {
  it('adds what was reported before and keeps what events already brought', () => {
    const live = new LiveSections();
    live.select('r1');
    live.apply(ev(sec(1, 'login', { parent: 0, result: 'Passed' })));
    const changed = live.seed('r1', 0, [
      { phase: 'main', section: sec(0, 'boot') },
      { phase: 'main', section: sec(1, 'login', { parent: 0 }) },
    ]);
    expect(changed).toBe(true);
    const { roots } = live.of(0);
    expect(roots.map((r) => r.section.name)).toEqual(['boot']);
    expect(roots[0].children.map((c) => c.section.name)).toEqual(['login']);
    expect(roots[0].children[0].section.result).toBe('Passed');
    expect(live.seed('other-run', 0, [{ phase: 'main', section: sec(2, 'x') }])).toBe(false);
  });
});
