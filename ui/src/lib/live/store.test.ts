import { describe, expect, it } from 'vitest';
import type { Progress, RunEvent, RunStatus, RunView, TaskKind, TaskState, TaskView } from '../api/types';
import { LiveStore, SHARED } from './store';

const RUN = 'r20261121-195500-3f9a';

const progress = (done: number, total = 4): Progress => ({ done, total, failures: 0, aborted: 0, elapsed_ms: done * 1000, eta_ms: null });

function task(item: number, state: TaskState, o: Partial<TaskView> = {}): TaskView {
  return {
    item,
    task_id: 100 + item,
    task: `t${item}`,
    kind: 'test',
    group: 'g',
    lane: 'stb-01',
    state,
    est_task_time: 1,
    started_ms: null,
    finished_ms: null,
    ...o,
  };
}

const queued: TaskState = { state: 'queued', reason: 'waits for t0' };
const running: TaskState = { state: 'running', phase: 'main' };
const passed: TaskState = { state: 'done', result: 'Passed', message: '', failure: false, flaky: false };
const failed: TaskState = { state: 'done', result: 'Failed', message: 'no video', failure: true, flaky: false };

/** A view of RUN numbered `seq`: `tasks` on lane stb-01 by kind, `shared` on no lane. */
function view(seq: number, tasks: TaskView[], o: Partial<RunView> & { shared?: TaskView[] } = {}): RunView {
  const of = (k: TaskKind) => tasks.filter((t) => t.kind === k && t.state.state !== 'waiting');
  return {
    run_id: RUN,
    seq,
    pack_name: 'stb-smoke',
    pack_version: '1.2.0',
    status: 'running',
    reason: null,
    started_ms: 1_000,
    ended_ms: null,
    verdict: null,
    lanes: [
      {
        name: 'stb-01',
        dut: null,
        setup: of('setup'),
        test: of('test'),
        teardown: of('teardown'),
        delay: tasks.filter((t) => t.state.state === 'waiting'),
        progress: progress(0),
      },
    ],
    shared: o.shared ?? [],
    progress: progress(0),
    ...o,
  };
}

const taskEv = (seq: number, item: number, state: TaskState, ts = 5_000): RunEvent => ({
  type: 'task_state',
  run_id: RUN,
  seq,
  item,
  task: `t${item}`,
  kind: 'test',
  group: 'g',
  lane: 'stb-01',
  state,
  ts,
});
const statusEv = (seq: number, status: RunStatus, run_id = RUN): RunEvent => ({ type: 'run_status', run_id, seq, status, reason: null, verdict: null, ts: 0 });
const progressEv = (seq: number, done: number, run_id = RUN): RunEvent => ({ type: 'progress', run_id, seq, progress: progress(done), ts: 0 });

/** A store showing RUN, with `v` loaded. */
function shown(v: RunView): LiveStore {
  const s = new LiveStore();
  s.setActive([v]);
  s.select(RUN);
  expect(s.load(s.beginLoad(), v)).toBe(true);
  return s;
}

const stateOf = (s: LiveStore, item: number) => s.tasks.get(item)?.state;

describe('LiveStore: events against the loaded view', () => {
  it('drops events the view already has and applies later ones', () => {
    const s = shown(view(10, [task(0, running), task(1, queued)]));
    expect(s.apply(taskEv(9, 0, queued))).toEqual({ changed: false });
    expect(stateOf(s, 0)).toEqual(running);
    const r = s.apply(taskEv(11, 0, passed, 7_000));
    expect(r.changed).toBe(true);
    expect(r.task).toEqual({ item: 0, before: running, after: passed });
    expect(s.tasks.get(0)).toMatchObject({ state: passed, finished_ms: 7_000 });
  });

  it('keeps the newest state of a task when its events arrive out of order', () => {
    const s = shown(view(10, [task(1, queued)]));
    s.apply(taskEv(13, 1, passed));
    expect(s.apply(taskEv(12, 1, running)).changed).toBe(false);
    expect(stateOf(s, 1)).toEqual(passed);
  });

  // The old reconciliation ranked states (queued/waiting < running < done) and let an event
  // of the same rank through: these are the cases it got wrong.
  it('an older event of the same kind does not undo the view', () => {
    const waiting: TaskState = { state: 'waiting', reason: 'resources busy (ir_blaster); retry in 5s' };
    const setup: TaskState = { state: 'running', phase: 'setup' };
    const s = new LiveStore();
    s.select(RUN);
    const token = s.beginLoad();
    // Sent before the view was built, received while it was on its way.
    s.apply(taskEv(7, 1, queued));
    s.apply(taskEv(8, 2, setup));
    s.apply(statusEv(9, 'running'));
    s.apply(progressEv(9, 1));
    const v = view(12, [task(1, waiting), task(2, running)], { status: 'stalled', progress: { ...progress(1), elapsed_ms: 9_000 } });
    s.load(token, v);
    expect(stateOf(s, 1)).toEqual(waiting);
    expect(stateOf(s, 2)).toEqual(running);
    expect(s.run?.status).toBe('stalled');
    expect(s.run?.progress.elapsed_ms).toBe(9_000);
  });

  it('a newer event moves a task back to a state the old ranks held lower', () => {
    const waiting: TaskState = { state: 'waiting', reason: 'resources busy' };
    const s = new LiveStore();
    s.select(RUN);
    const token = s.beginLoad();
    s.apply(taskEv(13, 1, queued));
    s.load(token, view(12, [task(1, waiting)]));
    expect(stateOf(s, 1)).toEqual(queued);
  });

  it('applies the events that came while the view was on its way and are newer than it', () => {
    const s = new LiveStore();
    s.setActive([view(3, [])]);
    s.select(RUN);
    const token = s.beginLoad();
    s.apply(taskEv(4, 0, running));
    s.apply(taskEv(6, 0, passed));
    s.apply(taskEv(7, 1, running));
    s.apply(progressEv(8, 1));
    expect(s.run).toBeNull();
    s.load(token, view(5, [task(0, running), task(1, queued)]));
    expect(stateOf(s, 0)).toEqual(passed);
    expect(stateOf(s, 1)).toEqual(running);
    expect(s.run?.progress.done).toBe(1);
    // Once the view is in, events are no longer kept.
    s.apply(taskEv(9, 1, passed));
    const t2 = s.beginLoad();
    s.load(t2, view(9, [task(0, passed), task(1, passed)]));
    expect(stateOf(s, 1)).toEqual(passed);
  });

  it('keeps events while any of two overlapping fetches is on its way', () => {
    const s = shown(view(1, [task(0, queued), task(1, queued)]));
    const first = s.beginLoad();
    const second = s.beginLoad();
    s.apply(taskEv(3, 0, running));
    s.load(first, view(2, [task(0, queued), task(1, queued)]));
    s.apply(taskEv(5, 1, running));
    // The second view was built before event 5 but arrives after it.
    s.load(second, view(4, [task(0, running), task(1, queued)]));
    expect(stateOf(s, 0)).toEqual(running);
    expect(stateOf(s, 1)).toEqual(running);
  });

  it('ignores a view fetched for a run no longer selected', () => {
    const s = new LiveStore();
    s.select(RUN);
    const token = s.beginLoad();
    s.select('r-other');
    expect(s.load(token, view(3, [task(0, running)]))).toBe(false);
    expect(s.tasks.size).toBe(0);
    expect(s.run).toBeNull();
  });

  it('asks for the view again for a task it does not have', () => {
    const s = shown(view(2, [task(0, queued)]));
    expect(s.apply(taskEv(3, 7, running))).toEqual({ changed: false, reloadRun: true });
    expect(s.apply(taskEv(2, 7, running)).reloadRun).toBe(false);
  });

  it('leaves the shown tasks alone for events of another run', () => {
    const s = shown(view(2, [task(0, queued)]));
    expect(s.apply({ ...taskEv(3, 0, running), run_id: 'r-other' })).toEqual({ changed: false });
    expect(stateOf(s, 0)).toEqual(queued);
  });

  it('a failed fetch of a run that is gone clears its header', () => {
    const s = shown(view(2, [task(0, queued)]));
    const token = s.beginLoad();
    expect(s.loadFailed(token, true)).toBe(true);
    expect(s.run).toBeNull();
    const stale = s.beginLoad();
    s.select('r-other');
    expect(s.loadFailed(stale, true)).toBe(false);
  });
});

describe('LiveStore: the run list', () => {
  it('updates a listed run by number and asks for the list for an unknown one', () => {
    const s = new LiveStore();
    s.setActive([view(5, [])]);
    expect(s.apply(statusEv(4, 'queued')).changed).toBe(false);
    expect(s.apply(statusEv(6, 'completed'))).toEqual({ changed: true, reloadRuns: false });
    expect(s.runs[0].status).toBe('completed');
    expect(s.apply(progressEv(3, 4, 'r-new'))).toEqual({ changed: false, reloadRuns: true });
  });

  it('takes the verdict and the end of a run from its final status', () => {
    const s = shown(view(2, []));
    s.setActive([view(2, [])]);
    s.apply({ type: 'run_status', run_id: RUN, seq: 3, status: 'completed', reason: null, verdict: 'failed', ts: 17_000 });
    expect(s.run).toMatchObject({ status: 'completed', verdict: 'failed', ended_ms: 17_000 });
    expect(s.runs[0]).toMatchObject({ verdict: 'failed', ended_ms: 17_000 });
  });

  it('a list fetched before the latest events keeps what they said', () => {
    const s = new LiveStore();
    s.setActive([view(5, [])]);
    s.apply(progressEv(8, 3));
    s.setActive([view(7, [], { status: 'stalled', progress: progress(2) })]);
    expect(s.runs[0].status).toBe('stalled');
    expect(s.runs[0].progress.done).toBe(3);
  });

  it('keeps finished runs it has seen below the active ones, newest first', () => {
    const s = new LiveStore();
    s.setActive([view(1, [], { run_id: 'a', started_ms: 1 }), view(1, [], { run_id: 'b', started_ms: 2 })]);
    s.setActive([view(1, [], { run_id: 'c', started_ms: 3 }), view(4, [], { run_id: 'a', started_ms: 1 })]);
    expect(s.runs.map((r) => r.run_id)).toEqual(['c', 'b', 'a']);
  });
});

describe('LiveStore: live output', () => {
  it('keeps the shown run\'s lines per task and phase, and says which tasks it saw start', () => {
    const s = shown(view(2, [task(0, running), task(1, queued)]));
    const r = s.apply({ type: 'log', run_id: RUN, seq: 3, item: 0, task: 't0', lane: 'stb-01', phase: 'main', lines: ['a', 'b'], ts: 0 });
    expect(r.log).toEqual({ item: 0, phase: 'main', lines: ['a', 'b'] });
    s.apply({ type: 'log_dropped', run_id: RUN, seq: 4, item: 0, task: 't0', lane: 'stb-01', phase: 'main', count: 12, ts: 0 });
    expect(s.logs.get(0, 'main')?.text()).toBe('a\nb\n[testbay: 12 lines not shown live; the log file has them]');
    expect(s.logs.get(0, 'setup')).toBeUndefined();
    s.apply({ type: 'log', run_id: 'r-other', seq: 5, item: 0, task: 't0', lane: 'x', phase: 'main', lines: ['x'], ts: 0 });
    expect(s.logs.get(0, 'main')?.length).toBe(3);
    // t0 was running when the view came: its start was not seen; t1 was still queued.
    expect(s.logs.seenFromStart(0)).toBe(false);
    expect(s.logs.seenFromStart(1)).toBe(true);
    s.apply(taskEv(6, 1, running));
    expect(s.logs.seenFromStart(1)).toBe(true);
    s.select('r-other');
    expect(s.logs.get(0, 'main')).toBeUndefined();
  });
});

describe('LiveStore: what the table shows', () => {
  const s = shown(
    view(
      1,
      [
        task(0, passed, { kind: 'setup', task: 'power_on' }),
        task(1, running, { task: 'boot' }),
        task(2, failed, { task: 'tune_channel' }),
        task(3, { state: 'waiting', reason: 'busy' }, { task: 'record_show' }),
        task(4, queued, { kind: 'teardown', task: 'power_off' }),
      ],
      { shared: [task(5, queued, { lane: null, task: 'soak_playback' })] },
    ),
  );

  it('counts tasks per lane and queue', () => {
    const m = s.laneStats();
    expect([...m.keys()]).toEqual(['stb-01', SHARED]);
    expect(m.get('stb-01')).toEqual({
      setup: { total: 1, done: 1, running: 0 },
      test: { total: 2, done: 1, running: 1 },
      teardown: { total: 1, done: 0, running: 0 },
      delay: { total: 1, done: 0, running: 0 },
    });
    expect(m.get(SHARED)?.test.total).toBe(1);
  });

  it('filters rows by lane, queue, state and name, in plan order', () => {
    const names = (f: Partial<Parameters<LiveStore['rows']>[0]>) =>
      s.rows({ lane: 'all', queue: 'all', state: 'all', name: '', ...f }).map((t) => t.task);
    expect(names({})).toEqual(['power_on', 'boot', 'tune_channel', 'record_show', 'power_off', 'soak_playback']);
    expect(names({ lane: SHARED })).toEqual(['soak_playback']);
    expect(names({ queue: 'delay' })).toEqual(['record_show']);
    expect(names({ queue: 'test' })).toEqual(['boot', 'tune_channel', 'soak_playback']);
    expect(names({ state: 'failed' })).toEqual(['tune_channel']);
    expect(names({ state: 'done' })).toEqual(['power_on', 'tune_channel']);
    expect(names({ state: 'queued', name: 'power' })).toEqual(['power_off']);
  });
});
