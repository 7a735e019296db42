import { describe, expect, it } from 'vitest';
import type { RunView, TaskView } from './api/client';
import { operatorWaitsOf, waitersOf, waitsFor } from './waits';

const task = (item: number, task: string, state: TaskView['state']): TaskView => ({
  item, task_id: item, task, kind: 'setup', group: null, lane: 'stb-04', state, est_task_time: 1, started_ms: null, finished_ms: null,
});
const progress = { done: 0, total: 1, failures: 0, aborted: 0, elapsed_ms: 0, eta_ms: null };

describe('waiters from live runs', () => {
  it('lists the delay queue of every lane with its reason', () => {
    const reason = 'resources busy (stb-04 held by operator mallory until 20:57:12Z); starts when they free, retry in 598s at the latest';
    const v: RunView = {
      run_id: 'r1', seq: 1, pack_name: 'p', pack_version: '1', status: 'stalled', reason: null, started_ms: 0, ended_ms: null, verdict: null, shared: [], progress,
      lanes: [{ name: 'stb-04', dut: null, setup: [], test: [], teardown: [], delay: [task(0, 'power_on', { state: 'waiting', reason })], progress }],
    };
    const ws = waitersOf([v]);
    expect(ws).toEqual([{ run_id: 'r1', item: 0, task: 'power_on', lane: 'stb-04', reason }]);
    expect(waitsFor(ws[0], 'stb-04')).toBe(true);
    expect(waitsFor(ws[0], 'stb-0')).toBe(false);
    expect(waitsFor(ws[0], 'power_switch')).toBe(false);
  });
});

describe('runs waiting for the operator', () => {
  it('lists running tasks with an open prompt, with their lane and DUT', () => {
    const reason = 'waiting for the operator: Plug in the HDMI cable';
    const dut = { name: 'stb-04', model: null, rack: 'rack-a', slot: 4 };
    const v: RunView = {
      run_id: 'r2', seq: 1, pack_name: 'p', pack_version: '1', status: 'running', reason: null, started_ms: 0, ended_ms: null, verdict: null, shared: [], progress,
      lanes: [{
        name: 'stb-04', dut, setup: [], delay: [], progress,
        test: [task(1, 'hdmi_check', { state: 'running', phase: 'main', waiting: reason }), task(2, 'boot', { state: 'running', phase: 'main' })],
        teardown: [],
      }],
    };
    expect(operatorWaitsOf([v])).toEqual([{ run_id: 'r2', item: 1, task: 'hdmi_check', lane: 'stb-04', dut: 'stb-04', reason }]);
    expect(waitersOf([v])).toEqual([]);
  });
});
