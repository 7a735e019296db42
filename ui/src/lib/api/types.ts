/**
 * API types the screens use. Until engine::api's generated types land in ./generated, these
 * are the UI's reading of the API; they are re-pointed at the generated files when they exist.
 */
export type EpochMs = number;

export interface Diagnostic {
  file: string;
  line: number | null;
  column: number | null;
  key_path: string | null;
  message: string;
}

export type ResourceMode = 'all' | 'per_task_separate' | 'per_task_combine' | 'custom_all' | 'custom_separate' | 'custom_combine';
export type CoverageMode = 'dut' | 'test' | 'split';
export type RunStatus = 'queued' | 'running' | 'completed' | 'stopped' | 'stalled' | 'could_not_start' | 'interrupted';
export type Phase = 'setup' | 'main' | 'teardown';
export type Lane = 'setup' | 'test' | 'teardown' | 'delay';

export interface PackSummary {
  name: string;
  version: string | null;
  dir: string;
  description: string;
  ok: boolean;
  diagnostics: Diagnostic[];
  task_count: number;
  group_count: number;
}

export interface TaskInfo {
  name: string;
  description: string;
  est_task_time: number;
  max_runtime: number | null;
  priority: number;
  exclusive_resources: string[];
  shared_resources: string[];
  prereq_tasks: string[];
  valid_duts: string[];
  valid_ats: string[];
  process_safe: boolean;
  has_setup: boolean;
  has_teardown: boolean;
}

export interface GroupInfo {
  name: string;
  description: string;
  tests: string[];
  setup: string[];
  teardown: string[];
  task_count: number;
  est_time: number;
}

/** One global parameter with its default, for the launch form. */
export interface ParamInfo {
  key: string;
  value: unknown;
}

export interface PackDetail extends PackSummary {
  setup: string[];
  teardown: string[];
  groups: GroupInfo[];
  tasks: TaskInfo[];
  params: ParamInfo[];
  resources: string[];
}

export type SlotState = 'free' | 'held' | 'in_use' | 'offline';

export interface Dut {
  name: string;
  model: string;
  manufacturer: string;
  serial: string;
  hw_version: string;
  tags: string[];
  ats: string | null;
  slot: number | null;
  state: SlotState;
  holder: string | null;
}

export interface Slot {
  slot: number;
  dut: string | null;
  state: SlotState;
  holder: string | null;
}

export interface Rack {
  name: string;
  description: string;
  slots: Slot[];
}

export interface ResourceInfo {
  name: string;
  kind: 'exclusive' | 'shared';
  capacity: number;
  config: Record<string, unknown>;
  in_use: number;
}

export interface Lab {
  racks: Rack[];
  duts: Dut[];
  resources: ResourceInfo[];
}

export interface Reservation {
  id: string;
  target: string;
  kind: 'dut' | 'resource';
  holder: string;
  start: EpochMs;
  end: EpochMs;
  state: 'pre_reserved' | 'claimed' | 'held';
  manual: boolean;
}

export interface Waiter {
  target: string;
  holder: string;
  since: EpochMs;
  available_at: EpochMs | null;
}

export interface Reservations {
  now: EpochMs;
  reservations: Reservation[];
  waiters: Waiter[];
}

export interface LaunchRequest {
  pack: string;
  version: string | null;
  groups: string[];
  ats: string;
  duts: string[];
  resource_mode: ResourceMode;
  coverage_mode: CoverageMode;
  params: Record<string, unknown>;
}

export interface RunSummary {
  run_id: string;
  pack: string;
  pack_version: string;
  groups: string[];
  ats: string;
  duts: string[];
  status: RunStatus;
  reason: string | null;
  result: string | null;
  created: EpochMs;
  started: EpochMs | null;
  finished: EpochMs | null;
  total: number;
  done: number;
  passed: number;
  failed: number;
  est_remaining: number | null;
}

export type TaskState = 'pending' | 'waiting' | 'delayed' | 'running' | 'done';

export interface SubResultView {
  name: string;
  description: string;
  result: string;
  message: string;
}

export interface TaskView {
  key: string;
  name: string;
  dut: string;
  lane: Lane;
  state: TaskState;
  wait_reason: string | null;
  phase: Phase | null;
  result: string | null;
  message: string;
  est_task_time: number;
  run_time: number | null;
  started: EpochMs | null;
  finished: EpochMs | null;
  sub_results: SubResultView[];
  artifacts: string[];
  logs: Phase[];
}

export interface RunDetail extends RunSummary {
  tasks: TaskView[];
  params: Record<string, unknown>;
  resource_mode: ResourceMode;
  coverage_mode: CoverageMode;
}

export interface RunFilter {
  pack?: string;
  group?: string;
  dut?: string;
  ats?: string;
  result?: string;
  status?: RunStatus;
  from?: EpochMs;
  to?: EpochMs;
  text?: string;
  sort?: string;
  desc?: boolean;
  offset: number;
  limit: number;
}

export interface RunPage {
  runs: RunSummary[];
  total: number;
}

export interface LogChunk {
  text: string;
  next_offset: number;
  eof: boolean;
}

export interface ExportFile {
  filename: string;
  mime: string;
  content: string;
}

export type Event =
  | { type: 'packs_changed' }
  | { type: 'run_changed'; run: RunSummary }
  | { type: 'task_changed'; run_id: string; task: TaskView }
  | { type: 'log'; run_id: string; task_key: string; phase: Phase; text: string }
  | { type: 'lab_changed' }
  | { type: 'reservations_changed' };
