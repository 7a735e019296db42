import { invoke } from '@tauri-apps/api/core';
import { listen as tauriListen, type UnlistenFn } from '@tauri-apps/api/event';
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

  listen(onEvent: (event: unknown) => void, onState: (state: ConnState) => void): () => void {
    let unlisten: UnlistenFn | null = null;
    let stopped = false;
    onState('connecting');
    tauriListen(TAURI_EVENT, (e) => {
      const p = e.payload;
      if (Array.isArray(p)) for (const ev of p) onEvent(ev);
      else onEvent(p);
    }).then((fn) => {
      if (stopped) fn();
      else {
        unlisten = fn;
        onState('open');
      }
    });
    return () => {
      stopped = true;
      unlisten?.();
    };
  }

  listenSaved(onSaved: (saved: Saved) => void): () => void {
    let unlisten: UnlistenFn | null = null;
    let stopped = false;
    tauriListen<Saved>(TAURI_SAVED, (e) => onSaved(e.payload)).then((fn) => {
      if (stopped) fn();
      else unlisten = fn;
    });
    return () => {
      stopped = true;
      unlisten?.();
    };
  }
}
