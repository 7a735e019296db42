import { invoke } from '@tauri-apps/api/core';
import { listen as tauriListen, type UnlistenFn } from '@tauri-apps/api/event';
import type { ConnState, Transport } from './transport';

/** Name of the Tauri event the shell emits for every engine Event. */
export const TAURI_EVENT = 'testbay://event';

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
    tauriListen(TAURI_EVENT, (e) => onEvent(e.payload)).then((fn) => {
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
}
