// Progress-line parsing and the clocks, without processes.
import test from 'ava';
import { compileProgressPattern, DEFAULT_PROGRESS_PATTERN, HeartbeatClock, LineSplitter, parseProgressLine } from '../supervisor/heartbeat.js';

const pattern = compileProgressPattern(DEFAULT_PROGRESS_PATTERN);

const lines: Array<[string, { done: number; total?: number } | null]> = [
  ['[HEARTBEAT] 3/10', { done: 3, total: 10 }],
  ['2024-01-01 INFO [HEARTBEAT]  42 / 1000 runs', { done: 42, total: 1000 }],
  ['[HEARTBEAT]0/0', { done: 0, total: 0 }],
  ['HEARTBEAT 3/10', null],
  ['[HEARTBEAT] x/10', null],
  ['progress 3 of 10', null],
  ['', null],
];
for (const [line, expected] of lines) {
  test(`default pattern on ${JSON.stringify(line)}`, (t) => {
    t.deepEqual(parseProgressLine(pattern, line), expected);
  });
}

test('custom patterns: total is optional; invalid or done-less patterns are refused with a reason', (t) => {
  t.deepEqual(parseProgressLine(compileProgressPattern(String.raw`processed (?<done>\d+) rows`), 'processed 77 rows'), { done: 77 });
  t.throws(() => compileProgressPattern('(unclosed'), { message: /not a valid regular expression/ });
  t.throws(() => compileProgressPattern(String.raw`(?<count>\d+)`), { message: /no named group "done"/ });
});

test('the clock: hello and any message reset liveness; progress advances only upward', (t) => {
  const clock = new HeartbeatClock(DEFAULT_PROGRESS_PATTERN);
  t.deepEqual(clock.state(), { lastMessageAt: null, helloSeen: false, progress: null });
  clock.onMessage({ type: 'hello', protocol: 1, extractor: 'x', pid: 1 }, 100);
  t.like(clock.state(), { lastMessageAt: 100, helloSeen: true });
  t.like(clock.onMessage({ type: 'progress', done: 5, total: 9, unit: 'runs' }, 200), { done: 5, total: 9, unit: 'runs', advanced_at: 200 });
  t.like(clock.onMessage({ type: 'progress', done: 5, total: 9, unit: 'runs' }, 300), { done: 5, advanced_at: 200 }, 'same done: no advance');
  t.is(clock.onMessage({ type: 'heartbeat' }, 400), null);
  t.is(clock.state().lastMessageAt, 400);
  t.like(clock.onStdoutLine('[HEARTBEAT] 6/9', 500), { done: 6, advanced_at: 500, unit: 'runs' });
  t.is(clock.onStdoutLine('just a log line', 600), null);
  t.is(clock.state().lastMessageAt, 400, 'stdout lines do not count as IPC liveness');
});

test('LineSplitter joins chunks, splits lines, cuts or drops oversize lines', (t) => {
  const seen: string[] = [];
  const splitter = new LineSplitter((line) => seen.push(line), 10);
  splitter.push(Buffer.from('ab'));
  splitter.push(Buffer.from('c\r\nde\nf'));
  splitter.push(Buffer.from('x'.repeat(20)));
  splitter.push(Buffer.from('\nlast'));
  splitter.end();
  t.deepEqual(seen, ['abc', 'de', 'fxxxxxxxxx', '', 'last']);

  const kept: string[] = [];
  const dropped: number[] = [];
  const strict = new LineSplitter((line) => kept.push(line), 10, (chars) => dropped.push(chars));
  strict.push(Buffer.from('ok\n' + 'y'.repeat(15)));
  strict.push(Buffer.from('y'.repeat(15) + '\nfine\n' + 'z'.repeat(11) + '\n'));
  strict.end();
  t.deepEqual(kept, ['ok', 'fine']);
  t.deepEqual(dropped, [30, 11]);
  // A multi-byte character split across chunks survives.
  const utf: string[] = [];
  const u = new LineSplitter((line) => utf.push(line));
  const bytes = Buffer.from('héllo\n');
  u.push(bytes.subarray(0, 2));
  u.push(bytes.subarray(2));
  t.deepEqual(utf, ['héllo']);
});
