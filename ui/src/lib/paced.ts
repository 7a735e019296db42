/**
 * One paced repaint clock for views that change many times a second (the live task table, a
 * followed log, elapsed times). Callbacks asked for within one period run together in a
 * single animation frame, at most once every PERIOD_MS: a log and a table that both change
 * cost the renderer one frame (style, layout, paint, compositing), not one each.
 */
const PERIOD_MS = 125;

const waiting = new Set<() => void>();
let timer: ReturnType<typeof setTimeout> | undefined;
let frame = 0;
let last = -Infinity;

/** Run `fn` in the next paced frame (once, however often it is asked for before then). */
export function paced(fn: () => void): void {
  waiting.add(fn);
  if (timer !== undefined || frame) return;
  const wait = last + PERIOD_MS - performance.now();
  if (wait <= 0) frame = requestAnimationFrame(run);
  else
    timer = setTimeout(() => {
      timer = undefined;
      frame = requestAnimationFrame(run);
    }, wait);
}

/** Forget `fn` if it is waiting (a view going away). */
export function unpace(fn: () => void): void {
  waiting.delete(fn);
}

function run() {
  frame = 0;
  last = performance.now();
  const due = [...waiting];
  waiting.clear();
  for (const fn of due) {
    try {
      fn();
    } catch (e) {
      console.error('paced update failed', e);
    }
  }
}
