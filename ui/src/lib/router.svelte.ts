/** Hash routing (`#/live/<run>`): works from `testbay serve` and from the Tauri protocol alike. */

export interface Route {
  screen: 'packs' | 'launch' | 'live' | 'queue' | 'lab' | 'schedules' | 'results' | 'webhooks' | 'audit';
  /** Path segments after the screen, decoded. */
  args: string[];
  query: URLSearchParams;
}

const SCREENS: Route['screen'][] = [
  'packs',
  'launch',
  'live',
  'queue',
  'lab',
  'schedules',
  'results',
  'webhooks',
  'audit',
];

function parse(): Route {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, q = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const screen = SCREENS.includes(parts[0] as Route['screen']) ? (parts[0] as Route['screen']) : 'packs';
  return { screen, args: screen === parts[0] ? parts.slice(1) : [], query: new URLSearchParams(q) };
}

export const route = $state<{ current: Route }>({ current: parse() });

window.addEventListener('hashchange', () => {
  route.current = parse();
});

export function href(screen: Route['screen'], ...args: string[]): string {
  return `#/${[screen, ...args.map(encodeURIComponent)].join('/')}`;
}

export function go(screen: Route['screen'], ...args: string[]) {
  location.hash = href(screen, ...args);
}
