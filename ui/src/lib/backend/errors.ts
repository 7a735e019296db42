/** Errors of API calls: the engine's `ApiError` with its `ErrorCode`, recognised in what a transport gives back. */
import type { ApiError as ApiErrorBody, Diagnostic, ErrorCode } from '../api/types';
import { TransportError } from './transport';

/** An error response from the engine: a code the UI can act on, a message, maybe diagnostics. */
export class ApiError extends Error {
  constructor(readonly code: ErrorCode, message: string, readonly diagnostics: Diagnostic[] = []) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Every `ErrorCode` (the type check fails when the engine adds one and this does not). */
const ERROR_CODES: Record<ErrorCode, true> = {
  invalid_request: true,
  not_found: true,
  pack_broken: true,
  busy: true,
  conflict: true,
  unavailable: true,
  too_large: true,
  timeout: true,
  internal: true,
  dut_bad: true,
  unauthorized: true,
  forbidden: true,
};

const isErrorCode = (c: unknown): c is ErrorCode => typeof c === 'string' && Object.hasOwn(ERROR_CODES, c);

/** A rejected call as an Error: Tauri rejects with the ApiError, or with a string when the call never reached the engine. */
export function toError(e: unknown): Error {
  if (e instanceof Error) return e;
  if (typeof e === 'string') return new TransportError(e);
  return errorOf(e) ?? new Error(String(e));
}

/**
 * Recognise an error response: HTTP answers `{"error": ApiError}`, Tauri rejects with the
 * ApiError itself. A code this UI does not know counts as `internal`.
 */
export function errorOf(res: unknown): Error | null {
  if (!res || typeof res !== 'object') return null;
  const body = res as { error?: unknown } & Partial<ApiErrorBody>;
  const e = body.error ?? (typeof body.code === 'string' && typeof body.message === 'string' ? body : null);
  if (!e) return null;
  if (typeof e === 'string') return new TransportError(e);
  if (typeof e !== 'object') return new TransportError(String(e));
  const { code, message, diagnostics } = e as Partial<ApiErrorBody>;
  return new ApiError(isErrorCode(code) ? code : 'internal', String(message ?? JSON.stringify(e)), diagnostics ?? []);
}

/** A Response is `{cmd, data}`; the screens want `data`. */
export function unwrap(res: unknown): unknown {
  if (res && typeof res === 'object' && 'cmd' in res) return (res as { data?: unknown }).data;
  return res;
}
