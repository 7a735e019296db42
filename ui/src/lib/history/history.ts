/** Results across runs, folded for display: strips of result squares, chart scales, flaky keys. */
import type { FlakyTask, MeasurementPoint, TaskHistoryEntry } from '../api/client';

/** One square of a strip: a run's verdict of a task. */
export interface Square {
  run_id: string;
  created_ms: number;
  result: string;
  failure: boolean;
  message: string;
}

/** Occurrences grouped by DUT (lane), each strip oldest to newest (newest right). */
export function stripsByDut(entries: TaskHistoryEntry[]): { dut: string; model: string | null; squares: Square[] }[] {
  const m = new Map<string, { dut: string; model: string | null; squares: Square[] }>();
  for (const e of entries) {
    const dut = e.lane ?? '(no DUT)';
    const g = m.get(dut) ?? { dut, model: e.dut_model, squares: [] };
    g.squares.push({
      run_id: e.run_id,
      created_ms: e.run_created_ms,
      result: e.result ?? e.state,
      failure: e.failure ?? false,
      message: e.message ?? '',
    });
    m.set(dut, g);
  }
  const out = [...m.values()];
  for (const g of out) g.squares.sort((a, b) => a.created_ms - b.created_ms || a.run_id.localeCompare(b.run_id));
  return out.sort((a, b) => (a.model ?? '').localeCompare(b.model ?? '') || a.dut.localeCompare(b.dut));
}

/** The key of a task on a DUT model, as the flaky list and run detail share it. */
export const flakyKey = (task: string, model: string | null | undefined) => `${task}\u0000${model ?? ''}`;

export function flakyKeys(list: FlakyTask[]): Set<string> {
  return new Set(list.map((f) => flakyKey(f.task, f.dut_model)));
}

/** Vertical range of a measurement chart: every value and every limit in view, padded. */
export function chartRange(points: MeasurementPoint[]): [number, number] {
  const vs: number[] = [];
  for (const p of points) {
    vs.push(p.measurement.value);
    if (p.measurement.low != null) vs.push(p.measurement.low);
    if (p.measurement.high != null) vs.push(p.measurement.high);
  }
  if (!vs.length) return [0, 1];
  let lo = Math.min(...vs);
  let hi = Math.max(...vs);
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

/** Sort flaky tasks by a column; score (flip rate) is the default, highest first. */
export function sortFlaky(list: FlakyTask[], key: 'score' | 'task' | 'model' | 'pack', desc: boolean): FlakyTask[] {
  const cmp: Record<typeof key, (a: FlakyTask, b: FlakyTask) => number> = {
    score: (a, b) => a.score - b.score || a.flips - b.flips || a.retried_passes - b.retried_passes,
    task: (a, b) => a.task.localeCompare(b.task),
    model: (a, b) => (a.dut_model ?? '').localeCompare(b.dut_model ?? ''),
    pack: (a, b) => a.pack.localeCompare(b.pack),
  };
  const out = [...list].sort(cmp[key]);
  return desc ? out.reverse() : out;
}
