import { describe, expect, it } from 'vitest';
import { agentState, agentsOf, cpuText, heardAgo, mayDrain, runningText, silentLanes } from './agents';
import type { AgentView } from './api/client';

const agent = (name: string, racks: string[], more: Partial<AgentView> = {}): AgentView => ({
  name, racks, host: 'ctl', version: '0.1.0', connected: true, state: 'ok', last_heartbeat_ms: 0, cpu: null,
  draining: false, runs: [], running: [], snapshot_fetches: 0, passed_over_until_ms: null, ...more,
});

describe('rack agents on the Lab screen', () => {
  it('lists the agents serving a rack, by name', () => {
    const all = [agent('b-ctl', ['rack-b']), agent('z', ['rack-a', 'rack-b']), agent('a-ctl', ['rack-a'])];
    expect(agentsOf(all, 'rack-a').map((a) => a.name)).toEqual(['a-ctl', 'z']);
    expect(agentsOf(all, 'rack-c')).toEqual([]);
  });
  it('says how long ago an agent was heard from', () => {
    expect(heardAgo(10_000, 10_400)).toBe('just now');
    expect(heardAgo(10_000, 9_000)).toBe('just now');
    expect(heardAgo(10_000, 14_900)).toBe('4 s ago');
    expect(heardAgo(0, 180_000)).toBe('3 min ago');
    expect(heardAgo(0, 3 * 3600_000)).toBe('3 h ago');
  });
  it('gives its CPU, and one word for its state', () => {
    expect(cpuText(agent('a', [], { cpu: 41.6 }))).toBe('42%');
    expect(cpuText(agent('a', []))).toBe('-');
    expect(agentState(agent('a', []), 0)).toEqual({ word: 'ok', tone: 'ok' });
    expect(agentState(agent('a', [], { draining: true }), 0).word).toBe('draining');
    expect(agentState(agent('a', [], { passed_over_until_ms: 30_000 }), 10_000).word).toBe('busy');
    expect(agentState(agent('a', [], { passed_over_until_ms: 30_000 }), 30_000).word).toBe('ok');
    expect(agentState(agent('a', [], { state: 'stalled', draining: true }), 0).word).toBe('stalled');
    expect(agentState(agent('a', [], { state: 'lost' }), 0).tone).toBe('bad');
    expect(agentState(agent('a', [], { state: 'disconnected' }), 0).word).toBe('disconnected');
  });
  it('says what it runs', () => {
    expect(runningText(agent('a', []))).toBe('idle');
    const running = [{ run_id: 'r1', task: 'probe', lane: 'stb-01', phase: 'main' as const }];
    expect(runningText(agent('a', [], { running }))).toBe('r1/stb-01 probe (main)');
  });
  it('lets operators and admins drain', () => {
    expect(mayDrain('operator')).toBe(true);
    expect(mayDrain('admin')).toBe(true);
    expect(mayDrain('viewer')).toBe(false);
    expect(mayDrain(null)).toBe(false);
  });
  it('names the lanes of a run whose agent went silent', () => {
    const phase = (run_id: string, lane: string) => ({ run_id, lane, task: 'probe', phase: 'main' as const });
    const all = [
      agent('a', ['rack-a'], { state: 'stalled', running: [phase('r1', 'stb-01'), phase('r2', 'stb-02')] }),
      agent('b', ['rack-b'], { state: 'ok', running: [phase('r1', 'stb-07')] }),
      agent('c', ['rack-c'], { state: 'lost', running: [phase('r1', 'rtr-01')] }),
    ];
    expect([...silentLanes(all, 'r1')]).toEqual([
      ['stb-01', 'agent a is stalled'],
      ['rtr-01', 'agent c is lost'],
    ]);
    expect(silentLanes(all, 'r3').size).toBe(0);
  });
});
