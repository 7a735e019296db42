/** The one backend interface the screens use; a transport is Tauri IPC or HTTP + WebSocket. */
import type { Event } from '../api/types';

export type ConnState = 'connecting' | 'open' | 'reconnecting';

export interface Transport {
  readonly kind: 'tauri' | 'web';
  /** Send one API request (JSON) and get its response (JSON). */
  dispatch(request: unknown): Promise<unknown>;
  /**
   * Start the event stream. `onEvent` gets every event; `onState` gets the connection state.
   * After a gap (`reconnecting` → `open`), callers must resync from fresh responses, because
   * events sent during the gap are lost.
   */
  listen(onEvent: (event: Event) => void, onState: (state: ConnState) => void): () => void;
  /**
   * Where files the page offered for saving went, for a transport whose host saves them
   * itself without showing it (the desktop webview). A browser shows its own downloads.
   */
  listenSaved?(onSaved: (saved: Saved) => void): () => void;
}

/** A file saved on the page's behalf: its full path, and whether saving it worked. */
export interface Saved {
  path: string;
  ok: boolean;
}

/** A transport-level failure (network down, HTTP error) as opposed to an API error response. */
export class TransportError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = 'TransportError';
  }
}
