/** One typed function per API request. */
import { backend } from '../backend/index.svelte';
import type * as T from './types';

export type * from './types';

const call = <R>(req: unknown) => backend.call<R>(req);

export const api = {
  listPacks: () => call<T.PackSummary[]>({ cmd: 'list_packs' }),
  getPack: (name: string) => call<T.PackDetail>({ cmd: 'get_pack', name }),
  getLab: () => call<T.Lab>({ cmd: 'get_lab' }),
  searchDuts: (query: string, pack?: string, ats?: string) => call<T.Dut[]>({ cmd: 'search_duts', query, pack, ats }),
  launch: (req: T.LaunchRequest) => call<{ run_id: string }>({ cmd: 'launch', ...req }),
  listRuns: (filter: T.RunFilter) => call<T.RunPage>({ cmd: 'list_runs', ...filter }),
  activeRuns: () => call<T.RunSummary[]>({ cmd: 'active_runs' }),
  getRun: (run_id: string) => call<T.RunDetail>({ cmd: 'get_run', run_id }),
  stopRun: (run_id: string) => call<void>({ cmd: 'stop_run', run_id }),
  readLog: (run_id: string, task_key: string, phase: T.Phase, offset: number) =>
    call<T.LogChunk>({ cmd: 'read_log', run_id, task_key, phase, offset }),
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
