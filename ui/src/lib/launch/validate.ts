/**
 * The launch form's own checks, pure: each parameter against the type of the pack's
 * default (the engine refuses the same), and why Launch is disabled. The engine stays
 * the judge; these checks keep the form from sending what it shows as invalid.
 */
import type { Diagnostic } from '../api/client';

export type ParamKind = 'bool' | 'number' | 'numbers' | 'strings' | 'list' | 'object' | 'string' | 'any';

/** The kind of value a parameter takes, from the pack's default. */
export function paramKind(def: unknown): ParamKind {
  if (def === null || def === undefined) return 'any';
  if (typeof def === 'boolean') return 'bool';
  if (typeof def === 'number') return 'number';
  if (typeof def === 'string') return 'string';
  if (Array.isArray(def)) {
    if (def.length && def.every((x) => typeof x === 'number')) return 'numbers';
    if (def.length && def.every((x) => typeof x === 'string')) return 'strings';
    return 'list';
  }
  return 'object';
}

/** What the field's hint says it takes. */
export function kindHint(kind: ParamKind): string {
  return { bool: 'boolean', number: 'number', numbers: 'list of numbers', strings: 'list', list: 'list', object: 'JSON object', string: 'text', any: 'JSON value' }[kind];
}

/**
 * A comma-separated list as typed: numbers for a list of numbers, else strings. A part
 * that is not a number makes the whole text its own value (a string), which the checks
 * refuse, so the form never sends an older list while showing the new text as invalid.
 */
export function parseList(text: string, kind: ParamKind): unknown {
  const parts = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (kind !== 'numbers') return parts;
  const nums = parts.map((p) => (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(p) ? Number(p) : NaN));
  return nums.some((n) => Number.isNaN(n)) ? text : nums;
}

/** The problem with `value` for a parameter whose default is `def`, or null. */
export function checkParam(key: string, def: unknown, value: unknown): string | null {
  const kind = paramKind(def);
  switch (kind) {
    case 'any':
      return null;
    case 'bool':
      return typeof value === 'boolean' ? null : 'needs true or false';
    case 'number':
      if (value === null || value === undefined || (typeof value === 'number' && Number.isNaN(value))) return 'needs a number';
      return typeof value === 'number' && Number.isFinite(value) ? null : 'needs a number';
    case 'string':
      return typeof value === 'string' ? null : 'needs text';
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value) ? null : 'needs a JSON object';
    case 'numbers':
    case 'strings':
    case 'list': {
      if (!Array.isArray(value)) return kind === 'numbers' ? 'numbers, separated by commas' : 'needs a list';
      if (kind === 'numbers' && !value.every((x) => typeof x === 'number' && Number.isFinite(x))) return 'numbers, separated by commas';
      if (kind === 'strings' && !value.every((x) => typeof x === 'string')) return 'text, separated by commas';
      if (key === 'valid_result' && value.length === 0) return 'needs at least one result name, else every task fails';
      return null;
    }
  }
}

/** Every parameter's problem by key. */
export function checkParams(defs: { key: string; value: unknown }[], values: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of defs) {
    const e = checkParam(d.key, d.value, values[d.key]);
    if (e) out[d.key] = e;
  }
  return out;
}

/** The server's diagnostics that name a parameter (`params.<key>`), by key. */
export function serverParamErrors(diagnostics: Diagnostic[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of diagnostics) {
    const m = /^params\.([^.[]+)/.exec(d.key_path ?? '');
    if (m && !out[m[1]]) out[m[1]] = d.message;
  }
  return out;
}

/** Why Launch is disabled, or null when it may be pressed. */
export function launchBlocker(f: {
  pack: boolean;
  groups: number;
  duts: number;
  paramErrors: Record<string, string>;
  launching: boolean;
}): string | null {
  if (f.launching) return 'Launching…';
  if (!f.pack) return 'Choose a pack';
  if (f.groups === 0) return 'Choose at least one group';
  if (f.duts === 0) return 'Choose at least one DUT';
  const bad = Object.keys(f.paramErrors);
  if (bad.length) return `Fix ${bad.length === 1 ? 'parameter' : 'parameters'} ${bad.join(', ')}`;
  return null;
}
