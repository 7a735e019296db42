/**
 * Sections and measurements tasks report while they run (the reporter), as the Live screen
 * shows them: per task occurrence and phase, a tree of sections with their state and
 * duration, each with the measurements recorded inside it.
 *
 * Fed by `section` and `measurement` run events; a section's start and stop are the same
 * section id, so a stop replaces what the start put. Plain objects, no Svelte state.
 */
import type { Measurement, Phase, RunEvent, Section, SectionRecord } from '../api/types';

export interface ShownMeasurement {
  measurement: Measurement;
  /** Within its limits; `null` when only logged. */
  passed: boolean | null;
}

export interface SectionNode {
  phase: Phase;
  section: Section;
  measurements: ShownMeasurement[];
  children: SectionNode[];
}

/** Sections kept per occurrence; older ones of a very long task are not shown live. */
export const MAX_SECTIONS_PER_TASK = 2000;

interface TaskSections {
  /** By `${phase}/${id}`. */
  nodes: Map<string, SectionNode>;
  /** Top-level sections in the order they started. */
  roots: SectionNode[];
  /** Measurements outside any section. */
  loose: ShownMeasurement[];
}

export class LiveSections {
  private runId: string | null = null;
  private tasks = new Map<number, TaskSections>();

  /** Shows another run (or none): forgets what the previous one reported. */
  select(runId: string | null) {
    if (runId !== this.runId) {
      this.runId = runId;
      this.tasks.clear();
    }
  }

  private task(item: number): TaskSections {
    let t = this.tasks.get(item);
    if (!t) {
      t = { nodes: new Map(), roots: [], loose: [] };
      this.tasks.set(item, t);
    }
    return t;
  }

  /** Applies one run event; true when it changed what is shown. */
  apply(ev: RunEvent): boolean {
    if (ev.run_id !== this.runId) return false;
    if (ev.type === 'section') {
      const t = this.task(ev.item);
      const key = `${ev.phase}/${ev.section.id}`;
      const had = t.nodes.get(key);
      if (had) {
        had.section = ev.section;
        return true;
      }
      if (t.nodes.size >= MAX_SECTIONS_PER_TASK) return false;
      const node: SectionNode = { phase: ev.phase, section: ev.section, measurements: [], children: [] };
      t.nodes.set(key, node);
      const parent = ev.section.parent != null ? t.nodes.get(`${ev.phase}/${ev.section.parent}`) : undefined;
      (parent ? parent.children : t.roots).push(node);
      return true;
    }
    if (ev.type === 'measurement') {
      const t = this.task(ev.item);
      const shown = { measurement: ev.measurement, passed: ev.passed };
      const at = ev.section != null ? t.nodes.get(`${ev.phase}/${ev.section}`) : undefined;
      (at ? at.measurements : t.loose).push(shown);
      return true;
    }
    return false;
  }

  /**
   * Adds what an occurrence reported before this screen listened (`task_sections`):
   * sections the events already brought stay as they are, since they are newer.
   * True when it changed what is shown.
   */
  seed(runId: string, item: number, records: readonly SectionRecord[]): boolean {
    if (runId !== this.runId) return false;
    const t = this.task(item);
    let changed = false;
    for (const r of records) {
      const key = `${r.phase}/${r.section.id}`;
      if (t.nodes.has(key) || t.nodes.size >= MAX_SECTIONS_PER_TASK) continue;
      const node = storedNode(r);
      t.nodes.set(key, node);
      const parent = r.section.parent != null ? t.nodes.get(`${r.phase}/${r.section.parent}`) : undefined;
      (parent ? parent.children : t.roots).push(node);
      changed = true;
    }
    // A section the events brought before its parent was known sits at the top: move
    // it under the parent now seeded.
    t.roots = t.roots.filter((n) => {
      const parent = n.section.parent != null ? t.nodes.get(`${n.phase}/${n.section.parent}`) : undefined;
      if (!parent) return true;
      parent.children.push(n);
      return false;
    });
    return changed;
  }

  /**
   * The tree of one occurrence (empty when it reported nothing), as a fresh copy: the
   * store changes its own nodes in place, a view compares what it is given.
   */
  of(item: number): { roots: SectionNode[]; loose: ShownMeasurement[] } {
    const t = this.tasks.get(item);
    const copy = (n: SectionNode): SectionNode => ({
      ...n,
      measurements: n.measurements.slice(),
      children: n.children.map(copy),
    });
    return t ? { roots: t.roots.map(copy), loose: t.loose.slice() } : { roots: [], loose: [] };
  }

  /** The innermost open section of an occurrence, for a one-line status. */
  current(item: number): string | null {
    const t = this.tasks.get(item);
    if (!t) return null;
    let path: string[] = [];
    let level = t.roots;
    for (;;) {
      const open = [...level].reverse().find((n) => n.section.result == null);
      if (!open) break;
      path = [...path, open.section.name];
      level = open.children;
    }
    return path.length ? path.join(' › ') : null;
  }
}

/** A section's duration in ms: to its stop, or to `now` while open. */
export function sectionMs(s: Section, now: number): number {
  return Math.max(0, (s.finished_ms ?? now) - s.started_ms);
}

/**
 * Whether a measurement is within its limits, by the engine's rules (`core::measure`):
 * `null` when it is only logged. A measurement that cannot be judged is out of limits.
 */
export function measurementPassed(m: Measurement): boolean | null {
  const { value: v, low, high } = m;
  const c = m.comparison ?? (low != null && high != null ? 'GELE' : low != null ? 'GE' : high != null ? 'LE' : 'LOG');
  if (c === 'LOG') return null;
  const needsLow = ['EQ', 'NE', 'GT', 'GE', 'GELE', 'GTLT', 'GELT', 'GTLE'].includes(c);
  const needsHigh = ['LT', 'LE', 'GELE', 'GTLT', 'GELT', 'GTLE'].includes(c);
  if (!Number.isFinite(v) || (needsLow && (low == null || !Number.isFinite(low))) || (needsHigh && (high == null || !Number.isFinite(high)))) return false;
  const lo = low as number;
  const hi = high as number;
  if (needsLow && needsHigh && lo > hi) return false;
  switch (c) {
    case 'EQ': return v === lo;
    case 'NE': return v !== lo;
    case 'GT': return v > lo;
    case 'GE': return v >= lo;
    case 'LT': return v < hi;
    case 'LE': return v <= hi;
    case 'GELE': return lo <= v && v <= hi;
    case 'GTLT': return lo < v && v < hi;
    case 'GELT': return lo <= v && v < hi;
    case 'GTLE': return lo < v && v <= hi;
  }
  return null;
}

/** A stored section as a tree node, its measurements judged (no children yet). */
function storedNode(r: SectionRecord): SectionNode {
  return {
    phase: r.phase as Phase,
    section: r.section,
    measurements: r.section.measurements.map((m) => ({ measurement: m, passed: measurementPassed(m) })),
    children: [],
  };
}

/** The tree of a stored task's sections (Results), as Live builds it from events. */
export function storedTree(records: readonly SectionRecord[]): SectionNode[] {
  const nodes = new Map<string, SectionNode>();
  const roots: SectionNode[] = [];
  for (const r of records) {
    const node = storedNode(r);
    nodes.set(`${r.phase}/${r.section.id}`, node);
    const parent = r.section.parent != null ? nodes.get(`${r.phase}/${r.section.parent}`) : undefined;
    (parent ? parent.children : roots).push(node);
  }
  return roots;
}
