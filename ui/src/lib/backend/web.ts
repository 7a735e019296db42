import type { Event } from '../api/types';
import { TransportError, type ConnState, type Transport } from './transport';

const TOKEN_KEY = 'testbay.token';

/**
 * The token `testbay serve` prints when it binds a non-loopback address. It arrives once as
 * `?token=`; we keep it in sessionStorage and take it out of the address bar.
 */
export function takeToken(): string | null {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url.toString());
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

/** `{"error": {"code": "unauthorized"}}`: a lab's console wants a user token. */
export function isUnauthorized(body: unknown): boolean {
  const e = (body as { error?: { code?: unknown } } | null)?.error;
  return !!e && typeof e === 'object' && e.code === 'unauthorized';
}

export class WebTransport implements Transport {
  readonly kind = 'web' as const;
  private token: string | null;

  constructor(private base: string = '') {
    this.token = takeToken();
  }

  async dispatch(request: unknown): Promise<unknown> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await fetch(`${this.base}/api`, { method: 'POST', headers, body: JSON.stringify(request) });
    } catch (e) {
      throw new TransportError(`cannot reach the console: ${(e as Error).message}`);
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      throw new TransportError(`HTTP ${res.status}: ${text.slice(0, 200)}`, res.status);
    }
    // A lab's console without (or with a revoked) user token: sign in again.
    if (res.status === 401 && isUnauthorized(body)) {
      window.location.assign(`${this.base}/signin`);
    }
    // API errors come back as a JSON error response; let the caller read them.
    if (!res.ok && (body === null || typeof body !== 'object')) {
      throw new TransportError(`HTTP ${res.status}`, res.status);
    }
    return body;
  }

  listen(onEvent: (event: Event) => void, onState: (state: ConnState) => void): () => void {
    let ws: WebSocket | null = null;
    let stopped = false;
    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;

    const connect = () => {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const q = this.token ? `?token=${encodeURIComponent(this.token)}` : '';
      const base = this.base || `${proto}//${location.host}`;
      ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/events${q}`);
      ws.onopen = () => {
        attempt = 0;
        onState('open');
      };
      ws.onmessage = (m) => {
        if (typeof m.data !== 'string') return;
        // The engine's `Event`s, as it serialises them.
        let ev: Event | Event[];
        try {
          ev = JSON.parse(m.data);
        } catch {
          return;
        }
        // The server may batch events into one frame.
        if (Array.isArray(ev)) for (const e of ev) onEvent(e);
        else onEvent(ev);
      };
      ws.onclose = () => {
        ws = null;
        if (stopped) return;
        onState('reconnecting');
        // Exponential backoff with jitter, 0.5 s up to 10 s.
        const delay = Math.min(10_000, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
        attempt++;
        timer = setTimeout(connect, delay);
      };
    };
    onState('connecting');
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      ws?.close();
    };
  }
}
