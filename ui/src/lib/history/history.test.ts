import { describe, expect, it } from 'vitest';
import { chartRange, flakyKey, flakyKeys, sortFlaky, stripsByDut } from './history';
import type { FlakyTask, MeasurementPoint, TaskHistoryEntry } from '../api/client';

const entry = (run_id: string, created: number, lane: string, result: string, failure: boolean): TaskHistoryEntry => ({
  run_id,
  run_created_ms: created,
  run_status: 'completed',
  task_id: created,
  task: 't',
  seq: 0,
  lane,
  dut_model: lane.startsWith('a') ? 'TP-4000' : 'TP-5000',
  group: null,
  kind: 'test',
  state: 'done',
  result,
  failure,
  message: null,
  est_task_time: 1,
  run_time: 1,
  started_ms: created,
  flaky: false,
});

describe('history folding', () => {
  it('groups by DUT with the newest square on the right', () => {
    const s = stripsByDut([entry('r3', 3, 'a1', 'Failed', true), entry('r2', 2, 'b1', 'Passed', false), entry('r1', 1, 'a1', 'Passed', false)]);
    expect(s.map((g) => g.dut)).toEqual(['a1', 'b1']);
    expect(s[0].squares.map((q) => q.run_id)).toEqual(['r1', 'r3']);
    expect(s[0].model).toBe('TP-4000');
  });

  it('pads the chart range to include the limits', () => {
    const p = (value: number, low: number | null, high: number | null): MeasurementPoint => ({
      run_id: 'r',
      run_created_ms: 0,
      task_id: 1,
      lane: null,
      dut_model: null,
      measurement: { name: 'snr_db', value, units: 'dB', low, high, comparison: 'GELE', passed: true },
    });
    const [lo, hi] = chartRange([p(7, 5, 9), p(8, 5, 9)]);
    expect(lo).toBeLessThan(5);
    expect(hi).toBeGreaterThan(9);
    expect(chartRange([])).toEqual([0, 1]);
  });

  it('keys flaky tasks by task and model and sorts by score', () => {
    const f = (task: string, rate: number): FlakyTask => ({ pack: 'p', task, dut_model: 'M', flips: 1, flip_rate: rate, retried_passes: 0, score: rate, runs: [] });
    expect(flakyKeys([f('a', 0.5)]).has(flakyKey('a', 'M'))).toBe(true);
    expect(flakyKeys([f('a', 0.5)]).has(flakyKey('a', null))).toBe(false);
    expect(sortFlaky([f('a', 0.2), f('b', 0.9)], 'score', true).map((x) => x.task)).toEqual(['b', 'a']);
    expect(sortFlaky([f('b', 0.2), f('a', 0.9)], 'task', false).map((x) => x.task)).toEqual(['a', 'b']);
  });
});
