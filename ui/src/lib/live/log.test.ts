import { describe, expect, it } from 'vitest';
import { LiveLogs, LogBuffer } from './log';

describe('LogBuffer', () => {
  it('joins output read in pieces into lines and keeps the unfinished one last', () => {
    const b = new LogBuffer(100);
    b.append('one\ntw');
    b.append('o\nthr');
    expect(b.length).toBe(3);
    expect(b.lines()).toEqual(['one', 'two', 'thr']);
    expect(b.text()).toBe('one\ntwo\nthr');
    b.append('ee\n');
    expect(b.lines()).toEqual(['one', 'two', 'three']);
    expect(b.text()).toBe('one\ntwo\nthree');
    b.append('');
    expect(b.length).toBe(3);
  });

  it('whole lines end an unfinished one first', () => {
    const b = new LogBuffer(100);
    b.append('half');
    b.appendLines(['next']);
    expect(b.lines()).toEqual(['half', 'next']);
  });

  it('keeps at most cap lines, counting those cut from the front', () => {
    const b = new LogBuffer(3);
    b.appendLines(['1', '2', '3', '4']);
    b.append('5\n6\n7');
    expect(b.lines()).toEqual(['4', '5', '6', '7']);
    expect(b.cut).toBe(3);
    // The unfinished line is not counted against the cap.
    expect(b.length).toBe(4);
  });

  it('with slack, cuts back to cap only once cap + slack is passed', () => {
    const b = new LogBuffer(4, { slack: 2 });
    b.appendLines(['1', '2', '3', '4', '5', '6']);
    expect(b.cut).toBe(0);
    b.appendLines(['7']);
    expect(b.lines()).toEqual(['4', '5', '6', '7']);
    expect(b.cut).toBe(3);
  });

  it('shortens over-long lines, but not one still being written', () => {
    const b = new LogBuffer(10, { maxLine: 5 });
    b.append('abcdefgh\nabcdefgh');
    expect(b.lines()).toEqual(['abcde …', 'abcdefgh']);
  });

  it('gives the lines of a window, the unfinished line included', () => {
    const b = new LogBuffer(100);
    b.append('a\nb\nc\nd');
    expect(b.lines(1, 3)).toEqual(['b', 'c']);
    expect(b.lines(2, 10)).toEqual(['c', 'd']);
    expect(b.lines(4, 10)).toEqual([]);
  });

  it('knows which lines a scrolled view shows and where its end is', () => {
    const b = new LogBuffer(1000);
    b.appendLines(Array.from({ length: 100 }, (_, i) => `l${i}`));
    // 16 px lines, a 160 px view scrolled to line 20, 10 lines of overscan.
    expect(b.window(320, 160, 16, 10)).toEqual({ start: 10, end: 40 });
    expect(b.window(0, 160, 16, 10)).toEqual({ start: 0, end: 20 });
    expect(b.window(1440, 160, 16, 10)).toEqual({ start: 80, end: 100 });
    expect(b.endTop(160, 16)).toBe(1440);
    expect(new LogBuffer(10).endTop(160, 16)).toBe(0);
  });

  it('follows while the end is in sight, and again once cleared', () => {
    const b = new LogBuffer(1000);
    b.appendLines(Array.from({ length: 100 }, () => 'x'));
    expect(b.follow).toBe(true);
    b.scrolled(800, 160, 16);
    expect(b.follow).toBe(false);
    // Within a line of the end counts as the end.
    b.scrolled(1440 - 16, 160, 16);
    expect(b.follow).toBe(true);
    b.scrolled(0, 160, 16);
    b.clear();
    expect(b.follow).toBe(true);
    expect(b.length).toBe(0);
    expect(b.cut).toBe(0);
    expect(b.text()).toBe('');
  });
});

describe('LiveLogs', () => {
  it('keeps bounded lines per task and phase', () => {
    const l = new LiveLogs(2, 1);
    l.add(3, 'main', ['a', 'b', 'c']);
    l.add(3, 'setup', ['s']);
    l.add(3, 'main', ['d']);
    expect(l.get(3, 'main')?.lines()).toEqual(['c', 'd']);
    expect(l.get(3, 'main')?.cut).toBe(2);
    expect(l.get(3, 'setup')?.lines()).toEqual(['s']);
    expect(l.get(4, 'main')).toBeUndefined();
  });

  it('remembers which tasks it saw start', () => {
    const l = new LiveLogs();
    l.expectStarts([1, 2]);
    l.sawStart(5);
    expect([1, 2, 3, 5].map((i) => l.seenFromStart(i))).toEqual([true, true, false, true]);
    l.expectStarts([3]);
    expect([1, 3, 5].map((i) => l.seenFromStart(i))).toEqual([false, true, false]);
    l.clear();
    expect(l.seenFromStart(3)).toBe(false);
  });
});
