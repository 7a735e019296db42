/** Rack agents as the Lab screen shows them, without Svelte: which agents serve a rack, how long ago each was heard from, what it is doing. */
import type { AgentView } from './api/client';

/** The agents serving `rack`, by name. */
export function agentsOf(agents: AgentView[], rack: string): AgentView[] {
  return agents.filter((a) => a.racks.includes(rack)).sort((a, b) => a.name.localeCompare(b.name));
}

/** How long ago `lastMs` was at `nowMs`: `4 s ago`, `3 min ago`, `2 h ago`; `just now` under a second (or for a clock a little ahead). */
export function heardAgo(lastMs: number, nowMs: number): string {
  const s = Math.floor((nowMs - lastMs) / 1000);
  if (s < 1) return 'just now';
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

/** The agent's CPU use as its last heartbeat gave it: `42%`, `-` when it did not say. */
export function cpuText(a: Pick<AgentView, 'cpu'>): string {
  return a.cpu == null ? '-' : `${Math.round(a.cpu)}%`;
}

/** One word for the agent's state, and its tone: `ok`, `busy` (passed over for its CPU), `draining`, `stalled`, `lost`, `disconnected`. */
export function agentState(a: Pick<AgentView, 'state' | 'draining' | 'passed_over_until_ms'>, nowMs: number): { word: string; tone: string } {
  if (a.state === 'lost') return { word: 'lost', tone: 'bad' };
  if (a.state === 'stalled') return { word: 'stalled', tone: 'bad' };
  if (a.state === 'disconnected') return { word: 'disconnected', tone: 'idle' };
  if (a.draining) return { word: 'draining', tone: 'warn' };
  if (a.passed_over_until_ms != null && a.passed_over_until_ms > nowMs) return { word: 'busy', tone: 'warn' };
  return { word: 'ok', tone: 'ok' };
}

/** What it runs now, in a line: `r1/stb-01 probe (main)`, several joined by `, `; `idle` with nothing. */
export function runningText(a: Pick<AgentView, 'running'>): string {
  if (!a.running.length) return 'idle';
  return a.running.map((p) => `${p.run_id}/${p.lane} ${p.task} (${p.phase})`).join(', ');
}

/** Whether a caller with `role` may drain or undrain agents (an operator or an admin). */
export function mayDrain(role: string | null | undefined): boolean {
  return role === 'operator' || role === 'admin';
}

/** The lanes of run `runId` whose phases sit on a silent agent (`stalled` or `lost`), with why: `agent rack-a-ctl is stalled`. */
export function silentLanes(agents: Pick<AgentView, 'name' | 'state' | 'running'>[], runId: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const a of agents) {
    if (a.state !== 'stalled' && a.state !== 'lost') continue;
    for (const p of a.running) {
      if (p.run_id === runId && !out.has(p.lane)) out.set(p.lane, `agent ${a.name} is ${a.state}`);
    }
  }
  return out;
}
