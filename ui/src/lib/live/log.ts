/** Log text on the client: bounded buffers of lines, and a run's live output per task. */
import type { Phase } from '../api/types';

export interface LogBufferOptions {
  /** Lines allowed past `cap` before the oldest are cut back to `cap` (fewer, larger cuts). */
  slack?: number;
  /** Longer lines are cut to this many characters and marked with ` …`. */
  maxLine?: number;
}

/**
 * Bounded log text: whole lines plus an unfinished last one. At most `cap` whole lines are
 * kept; the oldest go first and `cut` counts them, so line `i` of the buffer is line
 * `cut + i` of everything appended. Also what a view scrolled over it shows (fixed-height
 * lines) and whether that view follows the end.
 */
export class LogBuffer {
  private kept: string[] = [];
  private partial = '';
  /** Lines dropped from the front to stay within `cap`. */
  cut = 0;
  /** Whether a view keeps the last line in sight as lines arrive. */
  follow = true;
  private readonly slack: number;
  private readonly maxLine: number;

  constructor(
    readonly cap: number,
    opts: LogBufferOptions = {},
  ) {
    this.slack = opts.slack ?? 0;
    this.maxLine = opts.maxLine ?? Infinity;
  }

  /** Add raw output; it may start or end in the middle of a line. */
  append(text: string): void {
    if (!text) return;
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop() ?? '';
    this.push(parts);
  }

  /** Add whole lines (without their line ends). */
  appendLines(lines: readonly string[]): void {
    if (this.partial) {
      // An unfinished line ends where whole lines begin.
      this.push([this.partial]);
      this.partial = '';
    }
    this.push(lines);
  }

  private push(lines: readonly string[]): void {
    for (const l of lines) this.kept.push(l.length > this.maxLine ? l.slice(0, this.maxLine) + ' …' : l);
    if (this.kept.length > this.cap + this.slack) {
      const n = this.kept.length - this.cap;
      this.kept.splice(0, n);
      this.cut += n;
    }
  }

  /** Forget everything and follow the end again. */
  clear(): void {
    this.kept = [];
    this.partial = '';
    this.cut = 0;
    this.follow = true;
  }

  /** Lines held, the unfinished one included. */
  get length(): number {
    return this.kept.length + (this.partial ? 1 : 0);
  }

  /** Lines `start` to `end` (exclusive) of those held, the unfinished one last. */
  lines(start = 0, end = this.length): string[] {
    const out = this.kept.slice(start, Math.min(end, this.kept.length));
    if (this.partial && start <= this.kept.length && end > this.kept.length) out.push(this.partial);
    return out;
  }

  /** Everything held, as text without a final line end. */
  text(): string {
    return this.kept.join('\n') + (this.partial ? (this.kept.length ? '\n' : '') + this.partial : '');
  }

  /** Scroll offset (px) of a view `viewHeight` high that shows the last line. */
  endTop(viewHeight: number, lineHeight: number): number {
    return Math.max(0, this.length * lineHeight - viewHeight);
  }

  /** Lines a view scrolled to `top` shows, with `overscan` lines either side: `[start, end)`. */
  window(top: number, viewHeight: number, lineHeight: number, overscan: number): { start: number; end: number } {
    return {
      start: Math.max(0, Math.floor(top / lineHeight) - overscan),
      end: Math.min(this.length, Math.ceil((top + viewHeight) / lineHeight) + overscan),
    };
  }

  /** The user scrolled a view to `top`: it follows while its end (within a line) is in sight. */
  scrolled(top: number, viewHeight: number, lineHeight: number): void {
    this.follow = top + viewHeight >= this.length * lineHeight - lineHeight;
  }
}

/**
 * A run's live output as `log` events bring it, per task and phase, from the moment a screen
 * watched the run; and which tasks the screen saw start, whose buffers hold all their output
 * (but for what the cap cut).
 */
export class LiveLogs {
  private buffers = new Map<string, LogBuffer>();
  private started = new Set<number>();

  constructor(
    readonly cap = 20_000,
    readonly slack = 1_000,
  ) {}

  private static key(item: number, phase: Phase): string {
    return `${item}:${phase}`;
  }

  add(item: number, phase: Phase, lines: readonly string[]): void {
    const k = LiveLogs.key(item, phase);
    let b = this.buffers.get(k);
    if (!b) this.buffers.set(k, (b = new LogBuffer(this.cap, { slack: this.slack })));
    b.appendLines(lines);
  }

  get(item: number, phase: Phase): LogBuffer | undefined {
    return this.buffers.get(LiveLogs.key(item, phase));
  }

  /** The task started while watched: its buffers hold its output from the start. */
  sawStart(item: number): void {
    this.started.add(item);
  }

  /** Only these tasks (not started yet, as a freshly loaded view says) will be seen starting. */
  expectStarts(items: Iterable<number>): void {
    this.started = new Set(items);
  }

  seenFromStart(item: number): boolean {
    return this.started.has(item);
  }

  clear(): void {
    this.buffers.clear();
    this.started.clear();
  }
}
