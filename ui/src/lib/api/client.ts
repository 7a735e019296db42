/** One typed function per API request (wire format: `{"cmd": "<name>", ...fields}`). */
import { backend } from '../backend/index.svelte';
import type * as T from './types';

export type * from './types';

const call = <R>(req: Record<string, unknown>) => backend.call<R>(req);

/** A RunQuery with every field present (the engine wants them all; null means "any"). */
export function runQuery(q: Partial<T.RunQuery>): T.RunQuery {
  return {
    pack: null,
    group: null,
    dut: null,
    ats: null,
    status: null,
    result: null,
    failed_only: false,
    from_ms: null,
    to_ms: null,
    text: null,
    sort: 'created',
    ascending: false,
    offset: 0,
    limit: 50,
    ...q,
  };
}

export const api = {
  info: () => call<T.ConsoleInfo>({ cmd: 'info' }),
  listPacks: () => call<T.PackSummary[]>({ cmd: 'list_packs' }),
  getPack: (name: string) => call<T.PackDetail>({ cmd: 'get_pack', name }),
  launch: (spec: T.LaunchSpec) => call<{ run_id: string }>({ cmd: 'launch', ...spec }),
  stopRun: (run_id: string) => call<{ run_id: string }>({ cmd: 'stop_run', run_id }),
  activeRuns: () => call<T.RunView[]>({ cmd: 'active_runs' }),
  runView: (run_id: string) => call<T.RunView>({ cmd: 'run_view', run_id }),
  readLog: (run_id: string, task_id: number, phase: T.Phase, offset: number, max_bytes: number | null = null) =>
    call<T.LogChunk>({ cmd: 'read_log', run_id, task_id, phase, offset, max_bytes }),
  listRuns: (q: Partial<T.RunQuery>) => call<T.RunPage>({ cmd: 'list_runs', ...runQuery(q) }),
  getRun: (run_id: string) => call<T.RunDetail>({ cmd: 'get_run', run_id }),
  // Lab and reservations.
  getLab: () => call<T.Lab>({ cmd: 'get_lab' }),
  searchDuts: (query: string, pack?: string, ats?: string) => call<T.Dut[]>({ cmd: 'search_duts', query, pack, ats }),
  reservations: () => call<T.Reservations>({ cmd: 'reservations' }),
  hold: (target: string, duration_s: number, holder: string) => call<T.Reservation>({ cmd: 'hold', target, duration_s, holder }),
  release: (id: string) => call<void>({ cmd: 'release', id }),
  exportRun: (run_id: string, format: 'junit' | 'yaml' | 'json') => call<T.ExportFile>({ cmd: 'export', run_id, format }),
};

/** Save text as a file download (works in the browser and in the Tauri webview). */
export function download(file: T.ExportFile) {
  const url = URL.createObjectURL(new Blob([file.content], { type: file.mime }));
  const a = document.createElement('a');
  a.href = url;
  a.download = file.filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** The queue a live task sits in: the delay queue while it waits for resources, else its kind. */
export function queueOf(t: { kind: T.TaskKind; state: T.TaskState }): T.Queue {
  return t.state.state === 'waiting' ? 'delay' : t.kind;
}

/** Short name of a task state for pills: the result when done, else the state. */
export function stateLabel(s: T.TaskState): string {
  return s.state === 'done' ? s.result : s.state;
}

/** Why a task waits, or its result message. */
export function stateNote(s: T.TaskState): string {
  switch (s.state) {
    case 'queued':
    case 'waiting':
      return s.reason;
    case 'running':
      return `${s.phase}`;
    case 'done':
      return s.message;
  }
}
