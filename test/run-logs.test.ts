// Children write their log file themselves: they outlive a SIGKILLed supervisor and keep printing, and
// the supervisor (or the one that adopts them) reads progress lines back from the file.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRun } from '../supervisor/run.js';
import { LogTail, MAX_LOG_READ_BYTES } from '../supervisor/spawn.js';
import { fixture, makeJob, makeSpec, recordingObserver, runningInProc, tempDir } from './helpers/job.js';

interface Supervisor {
  child: ChildProcess;
  output: () => string;
  exited: Promise<void>;
}

/** Starts test/fixtures/run-supervisor.mjs (the compiled process layer in a process of its own) for `argv`. */
function startSupervisor(logFile: string, runId: string, argv: string[]): Supervisor {
  const child = spawn(process.execPath, [fixture('run-supervisor.mjs'), logFile, runId, '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, output: () => output, exited };
}

async function waitFor<T>(what: string, probe: () => T | undefined | null | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function ticks(logFile: string): number[] {
  return [...readFileSync(logFile, 'utf8').matchAll(/^tick (\d+)$/gm)].map((m) => Number(m[1]));
}

/** SIGKILLs a whole process group if its leader still runs. */
function killGroup(pid: number): void {
  if (!runningInProc(pid)) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

test('a child printing every 50 ms keeps running and printing after its supervisor is SIGKILLed', async (t) => {
  const { dir, cleanup } = tempDir();
  const logFile = path.join(dir, 'logs', 'ticker', 'run.log');
  const supervisor = startSupervisor(logFile, `ticker-${process.pid}`, [process.execPath, fixture('ticker.mjs')]);
  let leader = 0;
  t.teardown(() => {
    supervisor.child.kill('SIGKILL');
    if (leader) killGroup(leader);
    cleanup();
  });
  leader = Number(await waitFor('the leader pid', () => /^leader (\d+)/m.exec(supervisor.output())?.[1]));
  await waitFor('a few ticks in the log', () => existsSync(logFile) && ticks(logFile).length >= 3);
  supervisor.child.kill('SIGKILL');
  await supervisor.exited;
  const atKill = ticks(logFile).length;
  await sleep(1000);
  t.true(runningInProc(leader), 'the child outlived its supervisor');
  const later = ticks(logFile);
  t.true(later.length > atKill + 5, `the log kept growing (${atKill} ticks at the kill, ${later.length} a second later)`);
  t.deepEqual(later, later.map((_, i) => i + 1), 'no tick was lost or written twice');
  t.regex(readFileSync(logFile, 'utf8'), /^tick 10 \(stderr\)$/m, 'stderr goes to the same file');
});

test('an adopted child is supervised for progress from the log it keeps writing', async (t) => {
  const { dir, cleanup } = tempDir();
  const logFile = path.join(dir, 'logs', 'ticker', 'run.log');
  const runId = `adopt-ticker-${process.pid}`;
  const supervisor = startSupervisor(logFile, runId, [process.execPath, fixture('ticker.mjs'), '100000']);
  let leader = 0;
  t.teardown(() => {
    supervisor.child.kill('SIGKILL');
    if (leader) killGroup(leader);
    cleanup();
  });
  const [, pid, startTime] = await waitFor('the leader', () => /^leader (\d+) (\d+)/m.exec(supervisor.output()));
  leader = Number(pid);
  await waitFor('progress reported by the first supervisor', () => /^progress \d+/m.test(supervisor.output()));
  supervisor.child.kill('SIGKILL');
  await supervisor.exited;
  const printedBefore = ticks(logFile).length;

  const job = makeJob({ name: 'ticker', heartbeat: 'stdout', stall_timeout: 5000, stop_grace: 500 });
  const { observer, recorded } = recordingObserver();
  const spec = makeSpec(dir, job, ['unused'], { runId, logFile, adopt: { pid: leader, startTime: startTime! }, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DUCKVISOR_RUN_ID: runId } });
  const handle = startRun(spec, observer);
  await waitFor('progress read back after adoption', () => recorded.progress.length >= 3);
  t.true(recorded.progress[0]!.done > printedBefore, 'only lines written after the adoption are read');
  t.is(recorded.progress[0]!.total, 100000);
  handle.stop('operator');
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.deepEqual(outcome.survivors, []);
  t.false(runningInProc(leader));
  t.true(outcome.progress!.done >= recorded.progress[2]!.done);
});

test('progress lines count from stdout and stderr alike, and a last line without a newline is read at exit', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const job = makeJob({ name: 'both-streams', heartbeat: 'stdout', stall_timeout: 5000 });
  const script = [
    'import sys, time',
    'print("[HEARTBEAT] 1/4", flush=True)',
    'time.sleep(0.3)',
    'print("[HEARTBEAT] 2/4", file=sys.stderr, flush=True)',
    'time.sleep(0.3)',
    'print("[HEARTBEAT] 3/4", flush=True)',
    'sys.stdout.write("[HEARTBEAT] 4/4")',
  ].join('\n');
  const { observer, recorded } = recordingObserver();
  const spec = makeSpec(dir, job, ['python3', '-c', script]);
  const outcome = await startRun(spec, observer).done;
  t.is(outcome.state, 'succeeded');
  t.deepEqual(recorded.progress.map((p) => p.done), [1, 2, 3, 4]);
  t.is(outcome.progress?.done, 4);
  t.is(readFileSync(spec.logFile, 'utf8'), '[HEARTBEAT] 1/4\n[HEARTBEAT] 2/4\n[HEARTBEAT] 3/4\n[HEARTBEAT] 4/4');
});

test('a run appends to an existing log and reads only what it wrote', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const job = makeJob({ name: 'append', heartbeat: 'stdout', stall_timeout: 5000 });
  const spec = makeSpec(dir, job, ['python3', fixture('progress.py'), '3']);
  const earlier = '[HEARTBEAT] 7/9\nan earlier attempt\n';
  mkdirSync(path.dirname(spec.logFile), { recursive: true });
  writeFileSync(spec.logFile, earlier);
  const { observer, recorded } = recordingObserver();
  const outcome = await startRun(spec, observer).done;
  t.is(outcome.state, 'succeeded');
  t.deepEqual(recorded.progress.map((p) => p.done), [1, 2, 3]);
  t.true(readFileSync(spec.logFile, 'utf8').startsWith(earlier));
});

/** A LogTail on a fresh file holding `content`, with the lines it hands on; closed and removed at teardown. */
function tailOn(t: ExecutionContext, content: string): { file: string; tail: LogTail; lines: string[] } {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'tail.log');
  writeFileSync(file, content);
  const lines: string[] = [];
  const tail = new LogTail(file, (line) => lines.push(line));
  t.teardown(() => tail.close());
  return { file, tail, lines };
}

test('LogTail: lines in pieces, a truncated file, and a backlog too large to read', (t) => {
  const { file, tail, lines } = tailOn(t, 'before the tail\n');
  tail.poll();
  t.deepEqual(lines, [], 'starts at the end by default');
  appendFileSync(file, 'one\ntw');
  tail.poll();
  t.deepEqual(lines, ['one']);
  appendFileSync(file, 'o\r\nthree\n');
  tail.poll();
  t.deepEqual(lines, ['one', 'two', 'three']);

  truncateSync(file, 0);
  appendFileSync(file, 'after truncation\n');
  tail.poll();
  t.deepEqual(lines.slice(3), ['after truncation']);

  // More than one poll may read: the reader jumps to the newest MAX_LOG_READ_BYTES and drops the line it lands in.
  const filler = `${'x'.repeat(99)}\n`;
  appendFileSync(file, filler.repeat(Math.ceil((MAX_LOG_READ_BYTES * 1.5) / filler.length)) + 'newest\n');
  const before = lines.length;
  tail.poll();
  const read = lines.slice(before);
  t.is(read.at(-1), 'newest');
  t.true(read.length < MAX_LOG_READ_BYTES / filler.length + 2, `${read.length} lines read`);
  t.true(read.slice(0, -1).every((line) => line === 'x'.repeat(99)), 'no partial line is handed on');
  t.true(statSync(file).size > MAX_LOG_READ_BYTES);
});

test('a run whose log file cannot be opened fails to start with a message naming the file', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  // The log's directory is a regular file: neither mkdir nor open can succeed.
  writeFileSync(path.join(dir, 'blocker'), '');
  const spec = makeSpec(dir, makeJob({ name: 'no-log' }), ['true'], { logFile: path.join(dir, 'blocker', 'run.log') });
  const outcome = await startRun(spec, recordingObserver().observer).done;
  t.is(outcome.state, 'failed');
  t.is(outcome.reason, 'crash');
  t.regex(outcome.detail ?? '', /log file .*blocker\/run\.log/);
});

test('LogTail: a file truncated below the offset is read again from its start, an empty file from its first byte', (t) => {
  const { file, tail, lines } = tailOn(t, '');
  tail.poll();
  appendFileSync(file, 'first\n');
  tail.poll();
  tail.poll();
  t.deepEqual(lines, ['first'], 'an unchanged file adds nothing');
  appendFileSync(file, 'second line\nthird line\n');
  tail.poll();
  truncateSync(file, 3);
  tail.poll();
  appendFileSync(file, '\nafter\n');
  tail.poll();
  t.deepEqual(lines, ['first', 'second line', 'third line', 'fir', 'after']);
});
