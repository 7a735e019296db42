import { invoke } from '@tauri-apps/api/core';
import { listen as tauriListen, type UnlistenFn } from '@tauri-apps/api/event';
import type { Event } from '../api/types';
import type { ConnState, Saved, Transport } from './transport';

/** Name of the Tauri event the shell emits engine Events on: one event, or an array of them. */
export const TAURI_EVENT = 'testbay://event';

/** Name of the Tauri event the shell emits when a file the page offered has been saved. */
export const TAURI_SAVED = 'testbay://saved';

export function isTauri(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}

export class TauriTransport implements Transport {
  readonly kind = 'tauri' as const;

  dispatch(request: unknown): Promise<unknown> {
    return invoke('dispatch', { request });
  }

  listen(onEvent: (event: Event) => void, onState: (state: ConnState) => void): () => void {
    onState('connecting');
    return subscribe<Event | Event[]>(
      TAURI_EVENT,
      (p) => {
        if (Array.isArray(p)) for (const ev of p) onEvent(ev);
        else onEvent(p);
      },
      () => onState('open'),
    );
  }

  listenSaved(onSaved: (saved: Saved) => void): () => void {
    return subscribe<Saved>(TAURI_SAVED, onSaved);
  }
}

/**
 * Listen to the Tauri event `name` until the returned function is called (also when that
 * happens before the listener is in place); `onOpen` once it is.
 */
function subscribe<T>(name: string, onPayload: (payload: T) => void, onOpen?: () => void): () => void {
  let unlisten: UnlistenFn | null = null;
  let stopped = false;
  tauriListen<T>(name, (e) => onPayload(e.payload)).then((fn) => {
    if (stopped) fn();
    else {
      unlisten = fn;
      onOpen?.();
    }
  });
  return () => {
    stopped = true;
    unlisten?.();
  };
}
