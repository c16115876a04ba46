// `duckvisord --once` live progress: without a terminal a real daemon prints plain progress lines (through
// its log, no escape codes) and keeps stdout for the summary; on a terminal the block is cleared before each
// log line and redrawn after it, so the two never mix.
import test from 'ava';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Writable } from 'node:stream';
import type { JobStatus, StatusView } from '../supervisor/control.js';
import type { RunView } from '../supervisor/history.js';
import { OnceProgress, progressBlock, progressPlainLines } from '../supervisor/once-progress.js';
import { bar } from '../supervisor/top.js';
import { daemonBin, fixture, killQuietly, writeConfig } from './helpers/duckvisord.js';

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `duckvisord --once` with pipes (no TTY) to its end. */
function runOnce(config: string, extra: string[]): Promise<Finished> & { pid: number | undefined } {
  const child = spawn(process.execPath, [daemonBin, '--config', config, '--once', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const done = new Promise<Finished>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return Object.assign(done, { pid: child.pid });
}

function walkerConfig(items: number) {
  return writeConfig(`  walker:
    command: [python3, ${JSON.stringify(fixture('progress.py'))}, "${items}"]
    heartbeat: stdout
    autostart: true
    limits: { rss: 256MiB }
`);
}

test('--once without a terminal prints one plain progress line per live job per interval, through the log', async (t) => {
  const { config, dir } = walkerConfig(60);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const once = runOnce(config, ['--progress-every', '500ms']);
  t.teardown(() => killQuietly(once.pid));
  const result = await once;
  t.is(result.code, 0, result.stderr);
  t.false(result.stderr.includes('\x1b'), 'no escape codes on stderr');
  t.false(result.stdout.includes('\x1b'), 'no escape codes on stdout');
  const lines = result.stderr.split('\n').filter((line) => line.includes('progress: walker'));
  t.true(lines.length >= 2, result.stderr);
  for (const line of lines) {
    t.regex(line, /^\S+Z info  progress: walker (starting|running), (no progress reported yet|\d+\/60 items \(\d+\.\d%\))(, [\d.]+\/s)?(, ETA \S+)?, RSS \S+ \S+\/256\.0 MiB$/, line);
  }
  const done = lines.map((line) => Number(/(\d+)\/60 items/.exec(line)?.[1] ?? 0));
  t.deepEqual(done, [...done].sort((a, b) => a - b), 'progress only moves forward');
  t.true(done.at(-1)! > 0, 'a line showed real progress');
  // stdout keeps only the summary.
  t.false(result.stdout.includes('progress:'));
  t.regex(result.stdout, /^walker\s+\S+\s+1\s+succeeded/m);
});

test('--progress-every none prints no progress lines; a bad value is a usage error', async (t) => {
  const { config, dir } = walkerConfig(20);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const once = runOnce(config, ['--progress-every', 'none']);
  t.teardown(() => killQuietly(once.pid));
  const result = await once;
  t.is(result.code, 0, result.stderr);
  t.false(result.stderr.includes('progress:'), result.stderr);
  const bad = await runOnce(config, ['--progress-every', 'often']);
  t.is(bad.code, 64);
  t.regex(bad.stderr, /--progress-every needs a duration such as 10s or 1m, or none; got 'often'/);
});

function liveJob(name: string, run: Partial<RunView>, figures: Partial<JobStatus> = {}): JobStatus {
  return {
    job: name,
    kind: 'command',
    autostart: true,
    run: { id: `run-${name}`, job: name, state: 'running', reason: null, progress_done: null, progress_total: null, progress_unit: 'items', ...run } as RunView,
    queued: null,
    rss_limit_bytes: 512 * 1024 ** 2,
    swap_limit_bytes: null,
    rate: null,
    eta_ms: null,
    uptime_ms: 1000,
    rss_bytes: 64 * 1024 ** 2,
    swap_bytes: 0,
    in_config: true,
    schedule: null,
    next_scheduled_at: null,
    ...figures,
  };
}

const status = (jobs: JobStatus[]): StatusView => ({
  daemon: { pid: 1, started_at: new Date().toISOString(), config_file: 'x', state_dir: 'y', concurrency: 2, live: jobs.length, queued: 0, shutting_down: false },
  jobs,
});

test('the block: one aligned line per live job, cut to the width; plain lines carry the same figures', (t) => {
  const view = status([
    liveJob('mlflow-runs', { progress_done: 30, progress_total: 120, progress_unit: 'runs' }, { rate: 3.5, eta_ms: 25_700 }),
    liveJob('metric-history', { state: 'publishing', progress_done: 66, progress_total: 66, progress_unit: 'runs' }),
    liveJob('done-job', { state: 'succeeded' }),
    liveJob('fresh', { state: 'starting' }, { rss_bytes: null }),
  ]);
  const block = progressBlock(view, 150);
  t.deepEqual(block, [
    `mlflow-runs     running     ${bar(0.25, 30)}  30/120 runs (25.0%)  3.5/s  ETA 25.7s  RSS 64.0 MiB/512.0 MiB`,
    `metric-history  publishing  ${bar(1, 30)}  66/66 runs (100.0%)`,
    'fresh           starting    no progress reported yet  RSS -/512.0 MiB',
  ]);
  for (const line of progressBlock(view, 60)) t.true([...line].length <= 59, line);
  t.deepEqual(progressPlainLines(view), [
    'progress: mlflow-runs running, 30/120 runs (25.0%), 3.5/s, ETA 25.7s, RSS 64.0 MiB/512.0 MiB',
    'progress: metric-history publishing, 66/66 runs (100.0%)',
    'progress: fresh starting, no progress reported yet, RSS -/512.0 MiB',
  ]);
  t.deepEqual(progressBlock(status([liveJob('old', { state: 'killed' })]), 100), []);
});

test('on a terminal a log line clears the block, is written, and the block is redrawn below it', async (t) => {
  let screen = '';
  const terminal = Object.assign(
    new Writable({
      write(chunk, _encoding, callback) {
        screen += String(chunk);
        callback();
      },
    }),
    { isTTY: true, columns: 100 },
  );
  const progress = new OnceProgress({ out: terminal, tty: true, redrawMs: 3_600_000 });
  const jobs = [liveJob('a', { progress_done: 1, progress_total: 4 }), liveJob('b', { progress_done: 3, progress_total: 4 })];
  progress.start(() => status(jobs));
  t.teardown(() => progress.stop());
  const block = progressBlock(status(jobs), 100).map((line) => line + '\n').join('');
  progress.logStream.write('first log line\n');
  await nextTurn();
  t.is(screen, `first log line\n${block}`, 'the block is drawn after the log line');
  screen = '';
  progress.logStream.write('second log line\n');
  t.is(screen, '\r\x1b[2A\x1b[Jsecond log line\n', 'the two block lines are erased before the log line');
  await nextTurn();
  t.is(screen, `\r\x1b[2A\x1b[Jsecond log line\n${block}`);
  screen = '';
  progress.stop();
  t.is(screen, '\r\x1b[2A\x1b[J', 'stop erases the block');
  screen = '';
  progress.logStream.write('after stop\n');
  await nextTurn();
  t.is(screen, 'after stop\n', 'no block after stop');
});
