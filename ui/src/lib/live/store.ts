/**
 * What the Live screen shows, kept current by run events: the list of runs, and the shown
 * run's header, tasks and live output.
 *
 * Every run event has the run's event number `seq`, and a `RunView` the number of the last
 * event it includes: an event numbered up to what a header, a list entry or a task already
 * reflects is old news and is dropped; a later one is applied. Events of the shown run that
 * arrive while its view is being fetched are kept and applied once the view is in.
 *
 * Plain objects, no Svelte state: thousands of rows change many times a second, so the
 * screen repaints on a paced frame after `apply` says something changed.
 */
import type { Phase, Progress, Queue, RunEvent, RunStatus, RunVerdict, RunView, TaskState, TaskView } from '../api/types';
import { queueOf } from '../api/tasks';
import { LiveLogs } from './log';

/** A run's header: what its `RunView` says, kept current by its events. */
export interface RunHead {
  run_id: string;
  pack_name: string;
  pack_version: string;
  status: RunStatus;
  reason: string | null;
  /** What the run came to, once it is over. */
  verdict: RunVerdict | null;
  /** This page's clock (ms) when `status` and `reason` came in. */
  statusAt: number;
  started_ms: number;
  /** When the run ended, once it is over (console time). */
  ended_ms: number | null;
  progress: Progress;
  /** This page's clock (ms) when `progress` came in: its times count on from there. */
  progressAt: number;
  lanes: string[];
  /** Numbers of the last events reflected in `status`/`reason` and in `progress`. */
  statusSeq: number;
  progressSeq: number;
}

/** What applying one event did, for the screen to act on. */
export interface Applied {
  /** Something shown changed: repaint. */
  changed: boolean;
  /** The event is about a run the list does not have: fetch the list again. */
  reloadRuns?: boolean;
  /** The event is about a task the shown view does not have: fetch the view again. */
  reloadRun?: boolean;
  /** A task of the shown run changed state. */
  task?: { item: number; before: TaskState; after: TaskState };
  /** Lines of the shown run's live output (already in `logs`). */
  log?: { item: number; phase: Phase; lines: readonly string[] };
}

const NOTHING: Applied = { changed: false };

/** Lane name of tasks no lane has taken yet (`split` coverage). */
export const SHARED = '(shared)';

export type StateFilter = 'all' | 'queued' | 'waiting' | 'running' | 'done' | 'failed';

/** Which tasks the table lists. */
export interface TaskFilter {
  lane: string | 'all';
  queue: Queue | 'all';
  state: StateFilter;
  /** Part of the task's name. */
  name: string;
}

export interface Counts {
  total: number;
  done: number;
  running: number;
}

export type LaneStats = Map<string, Record<Queue, Counts>>;

/** Whether a run is still going (it can be stopped). */
export function isActive(s: RunStatus): boolean {
  return s === 'running' || s === 'queued' || s === 'stalled';
}

export function headOf(v: RunView): RunHead {
  const { run_id, pack_name, pack_version, status, reason, started_ms, progress, seq } = v;
  return {
    run_id,
    pack_name,
    pack_version,
    status,
    reason,
    verdict: v.verdict ?? null,
    statusAt: Date.now(),
    started_ms,
    ended_ms: v.ended_ms ?? null,
    progress,
    progressAt: Date.now(),
    lanes: v.lanes.map((l) => l.name),
    statusSeq: seq,
    progressSeq: seq,
  };
}

/** `h` with the change `ev` brings, or `h` itself when `h` already has it (or newer). */
function updated(h: RunHead, ev: RunEvent): RunHead {
  if (ev.type === 'run_status' && ev.seq > h.statusSeq) {
    const over = !isActive(ev.status);
    return { ...h, status: ev.status, reason: ev.reason, verdict: ev.verdict ?? null, statusAt: Date.now(), ended_ms: over ? (h.ended_ms ?? ev.ts) : null, statusSeq: ev.seq };
  }
  if (ev.type === 'progress' && ev.seq > h.progressSeq) return { ...h, progress: ev.progress, progressAt: Date.now(), progressSeq: ev.seq };
  return h;
}

/** The newer parts of two headers of one run. */
function newest(a: RunHead, b: RunHead): RunHead {
  const status = a.statusSeq >= b.statusSeq ? a : b;
  const progress = a.progressSeq >= b.progressSeq ? a : b;
  return {
    ...b,
    status: status.status,
    reason: status.reason,
    verdict: status.verdict,
    statusAt: status.statusAt,
    ended_ms: status.ended_ms,
    statusSeq: status.statusSeq,
    progress: progress.progress,
    progressAt: progress.progressAt,
    progressSeq: progress.progressSeq,
  };
}

export class LiveStore {
  /** Runs going now and finished ones seen here, newest first. */
  runs: RunHead[] = [];
  /** The run shown (from the route); its header once its view is in. */
  selected: string | null = null;
  run: RunHead | null = null;
  /** The shown run's tasks by item, and the items in plan order. */
  tasks = new Map<number, TaskView>();
  order: number[] = [];
  laneNames: string[] = [];
  /** The shown run's live output. */
  readonly logs = new LiveLogs();
  /** This page's clock (ms) when each shown task's state came in: its "retry in" counts down from there. */
  readonly stateAt = new Map<number, number>();

  /** Number of the loaded view; a task's number once an event changed it. */
  private viewSeq = 0;
  private taskSeq = new Map<number, number>();
  /** Views being fetched; the shown run's events that came meanwhile. */
  private loads = new Set<number>();
  private lastLoad = 0;
  private pending: RunEvent[] | null = null;

  /** The runs going now (`active_runs`): they replace the list's, finished ones seen stay. */
  setActive(views: readonly RunView[]): void {
    const known = new Map(this.runs.map((r) => [r.run_id, r]));
    const fresh = views.map((v) => {
      const h = headOf(v);
      const old = known.get(h.run_id);
      return old ? newest(old, h) : h;
    });
    const ids = new Set(fresh.map((r) => r.run_id));
    this.runs = [...fresh, ...this.runs.filter((r) => !ids.has(r.run_id))].sort((a, b) => b.started_ms - a.started_ms);
  }

  /** Runs the list shows as going that are not among `views` (the runs going now). */
  staleActive(views: readonly RunView[]): string[] {
    const live = new Set(views.map((v) => v.run_id));
    return this.runs.filter((r) => isActive(r.status) && !live.has(r.run_id)).map((r) => r.run_id);
  }

  /**
   * A run the console no longer runs ended while this page did not hear it (a restart):
   * its stored record says how. No later event of the run can undo it.
   */
  settle(rec: { id: string; status: RunStatus; reason: string | null; verdict: RunVerdict | null; finished_ms: number | null }): void {
    const apply = (h: RunHead): RunHead => ({
      ...h,
      status: rec.status,
      reason: rec.reason,
      verdict: rec.verdict,
      ended_ms: rec.finished_ms,
      statusAt: Date.now(),
      statusSeq: Number.MAX_SAFE_INTEGER,
    });
    this.runs = this.runs.map((r) => (r.run_id === rec.id ? apply(r) : r));
    if (this.run?.run_id === rec.id) this.run = apply(this.run);
  }

  /** Show run `id` (or none): forget what the previous one showed. */
  select(id: string | null): void {
    this.selected = id;
    this.run = null;
    this.tasks = new Map();
    this.order = [];
    this.laneNames = [];
    this.viewSeq = 0;
    this.taskSeq.clear();
    this.stateAt.clear();
    this.logs.clear();
    this.loads.clear();
    this.pending = null;
  }

  /** A fetch of the shown run's view begins: keep its events until `load`. Returns the fetch's token. */
  beginLoad(): number {
    const token = ++this.lastLoad;
    this.loads.add(token);
    this.pending ??= [];
    return token;
  }

  /**
   * The view fetched under `token` arrived: it replaces the shown tasks, and the events that
   * came meanwhile and are newer than it are applied. False when another run was selected
   * since.
   */
  load(token: number, view: RunView): boolean {
    if (!this.loads.delete(token) || view.run_id !== this.selected) return false;
    const all = [...view.lanes.flatMap((l) => [...l.setup, ...l.test, ...l.teardown, ...l.delay]), ...view.shared];
    all.sort((a, b) => a.item - b.item);
    this.tasks = new Map(all.map((t) => [t.item, t]));
    const at = Date.now();
    this.stateAt.clear();
    for (const t of all) this.stateAt.set(t.item, at);
    this.order = all.map((t) => t.item);
    this.laneNames = view.lanes.map((l) => l.name);
    this.viewSeq = view.seq;
    this.taskSeq.clear();
    this.logs.expectStarts(all.filter((t) => t.state.state === 'queued' || t.state.state === 'waiting').map((t) => t.item));
    this.run = headOf(view);
    const late = this.pending ?? [];
    if (!this.loads.size) this.pending = null;
    for (const ev of late) if (ev.seq > view.seq) this.applyRun(ev);
    return true;
  }

  /**
   * The fetch under `token` failed; `gone`: the run is not live any more. False when another
   * run was selected since (the failure is of no interest).
   */
  loadFailed(token: number, gone = false): boolean {
    if (!this.loads.delete(token)) return false;
    if (!this.loads.size) this.pending = null;
    if (gone) this.run = null;
    return true;
  }

  /** Apply one run event. */
  apply(ev: RunEvent): Applied {
    if (this.pending && ev.run_id === this.selected && ev.type !== 'log' && ev.type !== 'log_dropped') this.pending.push(ev);
    return this.applyRun(ev);
  }

  private applyRun(ev: RunEvent): Applied {
    switch (ev.type) {
      case 'run_status':
      case 'progress': {
        let changed = false;
        let reloadRuns = false;
        const i = this.runs.findIndex((r) => r.run_id === ev.run_id);
        if (i < 0) reloadRuns = true;
        else {
          const h = updated(this.runs[i], ev);
          if (h !== this.runs[i]) {
            this.runs[i] = h;
            changed = true;
          }
        }
        if (this.run && this.run.run_id === ev.run_id) {
          const h = updated(this.run, ev);
          if (h !== this.run) {
            this.run = h;
            changed = true;
          }
        }
        return { changed, reloadRuns };
      }
      case 'log':
        if (ev.run_id !== this.selected) return NOTHING;
        this.logs.add(ev.item, ev.phase, ev.lines);
        return { changed: false, log: { item: ev.item, phase: ev.phase, lines: ev.lines } };
      case 'log_dropped': {
        if (ev.run_id !== this.selected) return NOTHING;
        const lines = [`[testbay: ${ev.count} lines not shown live; the log file has them]`];
        this.logs.add(ev.item, ev.phase, lines);
        return { changed: false, log: { item: ev.item, phase: ev.phase, lines } };
      }
      case 'task_state': {
        if (ev.run_id !== this.selected) return NOTHING;
        const t = this.tasks.get(ev.item);
        if (!t) return { changed: false, reloadRun: this.run != null && ev.seq > this.viewSeq };
        if (ev.seq <= (this.taskSeq.get(ev.item) ?? this.viewSeq)) return NOTHING;
        this.taskSeq.set(ev.item, ev.seq);
        this.stateAt.set(ev.item, Date.now());
        const state = ev.state;
        if (t.state.state !== 'running' && state.state === 'running') this.logs.sawStart(ev.item);
        // A new object per change, so keyed rows see it.
        this.tasks.set(ev.item, {
          ...t,
          state,
          lane: ev.lane,
          started_ms: state.state === 'running' && t.started_ms == null ? ev.ts : t.started_ms,
          finished_ms: state.state === 'done' && t.finished_ms == null ? ev.ts : t.finished_ms,
        });
        return { changed: true, task: { item: ev.item, before: t.state, after: state } };
      }
      case 'section':
      case 'measurement':
      case 'prompt':
      case 'prompt_answered':
        // What tasks report inside themselves: `LiveSections` (sections.ts) keeps it.
        return NOTHING;
    }
  }

  /** Per lane (the view's lanes first, in order), per queue: tasks, done, running. */
  laneStats(): LaneStats {
    const m: LaneStats = new Map();
    const zero = () => ({ total: 0, done: 0, running: 0 });
    const lane = () => ({ setup: zero(), test: zero(), teardown: zero(), delay: zero() });
    for (const name of this.laneNames) m.set(name, lane());
    for (const k of this.order) {
      const t = this.tasks.get(k)!;
      const name = t.lane ?? SHARED;
      let s = m.get(name);
      if (!s) m.set(name, (s = lane()));
      const q = s[queueOf(t)];
      q.total++;
      if (t.state.state === 'done') q.done++;
      if (t.state.state === 'running') q.running++;
    }
    return m;
  }

  /** The shown run's tasks that pass `f`, in plan order. */
  rows(f: TaskFilter): TaskView[] {
    const out: TaskView[] = [];
    for (const k of this.order) {
      const t = this.tasks.get(k)!;
      if (f.lane !== 'all' && (t.lane ?? SHARED) !== f.lane) continue;
      if (f.queue !== 'all' && queueOf(t) !== f.queue) continue;
      if (f.state === 'failed' ? !(t.state.state === 'done' && t.state.failure) : f.state !== 'all' && t.state.state !== f.state) continue;
      if (f.name && !t.task.includes(f.name)) continue;
      out.push(t);
    }
    return out;
  }
}
