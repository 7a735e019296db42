/** The run queue's and the schedules' requests (`api::queue`, `api::schedules`). */
import { backend } from '../backend/index.svelte';
import type * as T from './types';

type Cmd = T.Request['cmd'];
type Req<C extends Cmd> = Omit<Extract<T.Request, { cmd: C }>, 'cmd'>;
type Res<C extends Cmd> = Extract<T.Response, { cmd: C }> extends { data: infer D } ? D : never;

function call<C extends Cmd>(cmd: C, fields: Req<C>): Promise<Res<C>> {
  return backend.call<Res<C>>({ cmd, ...fields });
}

export const queueApi = {
  queue: () => call('queue', {}),
  move: (run_id: string, to: T.Move) => call('move_queued', { run_id, to }),
  priority: (run_id: string, priority: T.Priority) => call('set_queued_priority', { run_id, priority }),
  cancel: (run_id: string) => call('cancel_queued', { run_id }),
  schedules: () => call('list_schedules', {}),
  schedule: (id: string) => call('get_schedule', { id }),
  addSchedule: (def: T.ScheduleDef) => call('add_schedule', def),
  updateSchedule: (id: string, def: T.ScheduleDef) => call('update_schedule', { id, def }),
  pause: (id: string) => call('pause_schedule', { id }),
  resume: (id: string) => call('resume_schedule', { id }),
  removeSchedule: (id: string) => call('remove_schedule', { id }),
};
