/**
 * The run tasks waiting for a DUT or resource (their lane's delay queue), from the live
 * run views: the same state Live shows, so Lab and Live tell one story.
 */
import type { RunView } from './api/client';

export interface Waiter {
  run_id: string;
  item: number;
  task: string;
  lane: string;
  /** The console's words: what it waits for, who holds it, when it retries at the latest. */
  reason: string;
}

export function waitersOf(views: readonly RunView[]): Waiter[] {
  const out: Waiter[] = [];
  for (const v of views) {
    for (const l of v.lanes) {
      for (const t of l.delay) {
        if (t.state.state === 'waiting') out.push({ run_id: v.run_id, item: t.item, task: t.task, lane: l.name, reason: t.state.reason });
      }
    }
  }
  return out;
}

/** Whether a waiter's reason names `resource` (a DUT or lab resource) as a whole word. */
export function waitsFor(w: Waiter, resource: string): boolean {
  const esc = resource.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\w-])${esc}($|[^\\w-])`).test(w.reason);
}

/** A running task waiting for the operator to answer its prompt. */
export interface OperatorWait {
  run_id: string;
  item: number;
  task: string;
  lane: string;
  /** The lane's DUT, if it has one (its rack slot shows the wait). */
  dut: string | null;
  /** The console's words: `waiting for the operator: <the prompt>`. */
  reason: string;
}

export function operatorWaitsOf(views: readonly RunView[]): OperatorWait[] {
  const out: OperatorWait[] = [];
  for (const v of views) {
    for (const l of v.lanes) {
      for (const t of [...l.setup, ...l.test, ...l.teardown]) {
        if (t.state.state === 'running' && t.state.waiting) {
          out.push({ run_id: v.run_id, item: t.item, task: t.task, lane: l.name, dut: l.dut?.name ?? null, reason: t.state.waiting });
        }
      }
    }
    for (const t of v.shared) {
      if (t.state.state === 'running' && t.state.waiting) {
        out.push({ run_id: v.run_id, item: t.item, task: t.task, lane: t.lane ?? '', dut: null, reason: t.state.waiting });
      }
    }
  }
  return out;
}
