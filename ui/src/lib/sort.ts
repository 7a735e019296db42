/** Client-side sort for tables whose rows are all loaded. */
export interface SortState {
  key: string;
  desc: boolean;
}

export function toggleSort(s: SortState, key: string): SortState {
  return s.key === key ? { key, desc: !s.desc } : { key, desc: false };
}

export function sortRows<T>(rows: T[], s: SortState, get: (row: T, key: string) => unknown): T[] {
  const dir = s.desc ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = get(a, s.key);
    const y = get(b, s.key);
    if (x == null && y == null) return 0;
    if (x == null) return 1;
    if (y == null) return -1;
    if (typeof x === 'number' && typeof y === 'number') return (x - y) * dir;
    return String(x).localeCompare(String(y), undefined, { numeric: true }) * dir;
  });
}

export function arrow(s: SortState, key: string): string {
  return s.key === key ? (s.desc ? ' ▾' : ' ▴') : '';
}
