/** The one backend interface the screens use; a transport is Tauri IPC or HTTP + WebSocket. */

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
  listen(onEvent: (event: unknown) => void, onState: (state: ConnState) => void): () => void;
}

/** A transport-level failure (network down, HTTP error) as opposed to an API error response. */
export class TransportError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = 'TransportError';
  }
}
