/** One typed function per API request (wire format: `{"cmd": "<name>", ...fields}`). */
import { backend } from '../backend/index.svelte';
import type * as T from './types';

export type * from './types';
export { queueOf, stateLabel, stateNote } from './tasks';

type Cmd = T.Request['cmd'];
type Req<C extends Cmd> = Omit<Extract<T.Request, { cmd: C }>, 'cmd'>;
type Res<C extends Cmd> = Extract<T.Response, { cmd: C }> extends { data: infer D } ? D : never;

/** Send one request; the answer is the response's `data`. */
function call<C extends Cmd>(cmd: C, fields: Req<C>): Promise<Res<C>> {
  return backend.call<Res<C>>({ cmd, ...fields });
}

/** A RunQuery with every field present (null means "any"). */
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
  info: () => call('info', {}),
  listPacks: () => call('list_packs', {}),
  getPack: (name: string) => call('get_pack', { name }),
  /** Make a private version of the lab's pack library public (`NAME@VERSION`). */
  publishPack: (pack: string) => call('publish_pack', { pack }),
  launch: (spec: T.LaunchSpec) => call('launch', spec),
  stopRun: (run_id: string) => call('stop_run', { run_id }),
  activeRuns: () => call('active_runs', {}),
  runView: (run_id: string) => call('run_view', { run_id }),
  readLog: (run_id: string, task_id: number, phase: T.Phase, offset: number, max_bytes: number | null = null) =>
    call('read_log', { run_id, task_id, phase, offset, max_bytes }),
  listRuns: (q: Partial<T.RunQuery>) => call('list_runs', runQuery(q)),
  getRun: (run_id: string) => call('get_run', { run_id }),
  readFile: (run_id: string, path: string) => call('read_file', { run_id, path }),
  exportRun: (run_id: string, format: T.ReportFormat, new_failures_since?: string) =>
    call('export', new_failures_since ? { run_id, format, new_failures_since } : { run_id, format }),
  getLab: () => call('get_lab', {}),
  searchDuts: (query: string, pack: string | null, ats: string | null) => call('search_duts', { query, pack, ats }),
  reservations: () => call('reservations', {}),
  hold: (resource: string, by: string, duration_s: number) =>
    call('hold', { resource, by, duration_s, from_ms: null, next_available: false }),
  release: (id: T.ResId) => call('release', { id }),
  dutHealth: (dut: string) => call('dut_health', { dut }),
  reservationHistory: (hours: number) => call('reservation_history', { hours }),
  extendHold: (id: T.ResId, duration_s: number) => call('extend_hold', { id, duration_s }),
  listWebhooks: () => call('list_webhooks', {}),
  addWebhook: (url: string, events: T.WebhookEvent[], secret: string | null) =>
    call('add_webhook', { url, events, secret, enabled: true }),
  setWebhookEnabled: (id: number, enabled: boolean) =>
    call('update_webhook', { id, url: null, events: null, secret: null, enabled }),
  removeWebhook: (id: number) => call('remove_webhook', { id }),
  webhookDeliveries: (webhook_id: number | null, limit = 50) => call('webhook_deliveries', { webhook_id, limit }),
  /** Launch a stored run again; `only_failed`: only its failed tests and their prereqs. */
  relaunch: (run_id: string, only_failed = false) => call('relaunch', { run_id, only_failed }),
  taskHistory: (pack: string, task: string, dut_model: string | null = null, limit = 100) =>
    call('task_history', { pack, task, dut_model, limit }),
  measurementHistory: (q: Omit<T.MeasurementQuery, 'limit' | 'dut_model'> & { dut_model?: string | null; limit?: number }) =>
    call('measurement_history', { dut_model: null, limit: 100, ...q }),
  measurementYield: (pack: string, last_runs = 100) => call('measurement_yield', { pack, last_runs }),
  flaky: (pack: string | null, window = 10) => call('flaky', { pack, window }),
  compareRuns: (a: string, b: string, duration_threshold = 0.2) =>
    call('compare_runs', { a, b, options: { duration_threshold } }),
  pinBaseline: (run_id: string) => call('pin_baseline', { run_id }),
  unpinBaseline: (pack: string, dut_model: string | null) =>
    call('unpin_baseline', dut_model == null ? { pack } : { pack, dut_model }),
  baselines: (pack: string) => call('baselines', { pack }),
  listPrompts: () => call('list_prompts', {}),
  /** What a live task occurrence has reported so far (a screen opened mid-task starts here). */
  taskSections: (run_id: string, item: number) => call('task_sections', { run_id, item }),
  /** `run_id`: the prompt's run, so a lab's server that does not execute it forwards the answer. */
  answerPrompt: (id: number, answer: string, by: string | null, run_id?: string) =>
    call('answer_prompt', run_id ? { id, answer, by, run_id } : { id, answer, by }),
  /** Who the console takes this page for: the signed-in user and role (no user: a single seat). */
  whoAmI: () => call('who_am_i', {}),
  /** The audit log, newest first. */
  audit: (q: T.AuditQuery) => call('audit', q),
  triageRules: () => call('triage_rules', {}),
  addTriageRule: (rule: T.TriageRule, position?: number) =>
    call('add_triage_rule', position == null ? { rule } : { rule, position }),
  removeTriageRule: (name: string) => call('remove_triage_rule', { name }),
  runTriage: (run_id: string) => call('run_triage', { run_id }),
  triageSummary: (pack: string | null, last_runs = 50) =>
    call('triage_summary', pack ? { pack, last_runs } : { last_runs }),
  prune: (dry_run: boolean) => call('prune', { dry_run }),
  dataUsage: () => call('data_usage', {}),
  runKeep: (run_id: string) => call('run_keep', { run_id }),
  setRunKeep: (run_id: string, keep: boolean) => call('set_run_keep', { run_id, keep }),
  /** The rack agents this console knows (connected or not). */
  agents: () => call('agents', {}),
  /** Drain an agent (it finishes its runs, takes no new one), or take it back. */
  drainAgent: (name: string, drain: boolean) => call('drain_agent', { name, drain }),
};

/** Who holds a reservation, as a short label. */
export function holderLabel(h: T.Holder): string {
  return h.kind === 'operator' ? h.name : `${h.run_id}/${h.lane}${h.task ? `/${h.task}` : ''}`;
}

/**
 * Offer data as a file to save: a Blob URL clicked through `<a download>`. The same path in
 * the browser and in the Tauri webview, so nothing depends on `testbay serve`'s HTTP files.
 */
export function saveAs(data: BlobPart, mime: string, filename: string) {
  const url = URL.createObjectURL(new Blob([data], { type: mime }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Save an exported report (the answer of `export`). */
export function download(file: T.ExportFile) {
  saveAs(file.content, file.mime, file.filename);
}

/** Fetch a log or artifact through the API (`read_file`, path relative to the run's folder) and save it. */
export async function saveRunFile(run_id: string, path: string) {
  const f = await api.readFile(run_id, path);
  saveAs(fromBase64(f.content_base64), f.mime, f.filename);
}

function fromBase64(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(new ArrayBuffer(bin.length));
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
