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
