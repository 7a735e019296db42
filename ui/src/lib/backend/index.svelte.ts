/**
 * The backend the screens talk to: `call` sends a Request and returns its Response, `on`
 * subscribes to Events, `onResync` runs after the event stream came back from a gap (screens
 * then reload what they show, since events in the gap are lost).
 */
import type { Event } from '../api/types';
import { errorOf, toError, unwrap } from './errors';
import { isTauri, TauriTransport } from './tauri';
import { TransportError, type ConnState, type Saved, type Transport } from './transport';
import { WebTransport } from './web';

export { TransportError };
export { ApiError } from './errors';

type Listener = (event: Event) => void;

/** Longest stretch of event handling in one main-thread task, ms. */
const SLICE_MS = 8;

class Backend {
  readonly transport: Transport;
  conn = $state<ConnState>('connecting');
  /** The last file the desktop shell saved for the page (null in a browser). */
  lastSaved = $state<Saved | null>(null);
  private listeners = new Set<Listener>();
  private resyncers = new Set<() => void>();
  // The first open counts as a gap too: screens load over requests while the stream is
  // still connecting, and what happened in between reaches them only through a reload.
  private hadGap = true;
  // Events are handed to listeners in slices of at most SLICE_MS, so a burst of thousands of
  // events never holds the main thread for long. The first slice runs at the end of the task
  // that received the events (a microtask: no extra task per WebSocket frame); what is left
  // goes on in tasks of its own.
  private queue: Event[] = [];
  private draining = false;
  private tick = new MessageChannel();

  constructor() {
    this.tick.port1.onmessage = () => this.drain();
    this.transport = isTauri() ? new TauriTransport() : new WebTransport();
    this.transport.listenSaved?.((saved) => (this.lastSaved = saved));
    this.transport.listen(
      (ev) => {
        this.queue.push(ev);
        if (!this.draining) {
          this.draining = true;
          queueMicrotask(() => this.drain());
        }
      },
      (state) => {
        if (state === 'reconnecting') this.hadGap = true;
        this.conn = state;
        if (state === 'open' && this.hadGap) {
          this.hadGap = false;
          this.resyncSoon();
        }
      },
    );
  }

  private resyncTimer: ReturnType<typeof setTimeout> | undefined;

  /** Tell the screens to reload; several requests within 200 ms make one reload. */
  private resyncSoon() {
    if (this.resyncTimer) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      for (const r of this.resyncers) r();
    }, 200);
  }

  private drain() {
    const until = performance.now() + SLICE_MS;
    let i = 0;
    while (i < this.queue.length && performance.now() < until) this.deliver(this.queue[i++]);
    this.queue.splice(0, i);
    if (this.queue.length) this.tick.port2.postMessage(null);
    else this.draining = false;
  }

  private deliver(ev: Event) {
    // The engine says a subscriber fell behind: events were lost, reload (once per burst).
    if (ev.kind === 'resync') {
      this.resyncSoon();
      return;
    }
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch (e) {
        console.error('event listener failed', e);
      }
    }
  }

  async call<T>(request: unknown): Promise<T> {
    let res: unknown;
    try {
      res = await this.transport.dispatch(request);
    } catch (e) {
      // Tauri rejects with the serialized error; HTTP transport throws TransportError.
      throw toError(e);
    }
    const err = errorOf(res);
    if (err) throw err;
    return unwrap(res) as T;
  }

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onResync(fn: () => void): () => void {
    this.resyncers.add(fn);
    return () => this.resyncers.delete(fn);
  }
}

export const backend = new Backend();
