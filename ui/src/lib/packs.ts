/** The Packs screen's logic without Svelte: which row is which, where a pack comes from, who may publish it. */
import type { CallerView, PackSummary } from './api/types';

/**
 * What selects and launches a pack: its name for a pack folder on disk, `NAME@VERSION` for
 * a version of the lab's pack library (several versions of one name are listed).
 */
export function packKey(p: PackSummary): string {
  return p.library ? p.library.reference : p.name;
}

/** Where the pack comes from: a folder the console finds on disk, or the lab's library. */
export function origin(p: PackSummary): 'disk' | 'library' {
  return p.library ? 'library' : 'disk';
}

/**
 * Whether `me` may publish the pack: a private library version, and `me` its owner or an
 * admin (a single seat's own operator is an admin, named `local`).
 */
export function canPublish(p: PackSummary, me: CallerView | null): boolean {
  if (!p.library || !p.library.private || !me) return false;
  return me.role === 'admin' || (me.user ?? 'local') === p.library.owner;
}
