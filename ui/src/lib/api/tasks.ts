/** What the screens say about a task's state (pure: no backend). */
import type * as T from './types';

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
      return s.waiting ? `${s.phase} · ${s.waiting}` : `${s.phase}`;
    case 'done':
      return s.message;
  }
}
