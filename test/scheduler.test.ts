import test from 'ava';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { History, type RunRow } from '../supervisor/history.js';
import { newRunId, safeName, Scheduler } from '../supervisor/scheduler.js';

function setup(concurrency: number, jobs = ['a', 'b', 'c']) {
  const history = History.open(path.join(mkdtempSync(path.join(os.tmpdir(), 'dv-sched-')), 'history.sqlite'));
  let now = 1_000_000;
  const live = new Map<string, RunRow>();
  const launched: RunRow[] = [];
  const abandoned: string[] = [];
  const scheduler = new Scheduler(
    history,
    {
      concurrency: () => concurrency,
      liveCount: () => live.size,
      jobIsLive: (job) => [...live.values()].some((run) => run.job === job),
      jobExists: (job) => jobs.includes(job),
      runPaths: (job, runId, chainId) => ({ staging_path: `/s/${job}/${chainId}.duckdb`, log_path: `/l/${job}/${runId}.log` }),
      launch: (run) => {
        history.updateRun(run.id, { state: 'running' });
        live.set(run.id, run);
        launched.push(run);
      },
      abandon: (run, detail) => {
        history.updateRun(run.id, { state: 'failed', detail });
        abandoned.push(run.id);
      },
    },
    () => now,
  );
  const finish = (run: RunRow) => {
    live.delete(run.id);
    history.updateRun(run.id, { state: 'succeeded' });
    scheduler.poke();
  };
  return { history, scheduler, launched, abandoned, finish, advance: (ms: number) => (now += ms), stop: () => (scheduler.stop(), history.close()) };
}

test('concurrency bounds live runs; the queue drains in order as runs finish', (t) => {
  const s = setup(2);
  t.teardown(s.stop);
  s.scheduler.enqueueStart('a');
  s.scheduler.enqueueStart('b');
  s.scheduler.enqueueStart('c');
  t.deepEqual(s.launched.map((r) => r.job), ['a', 'b']);
  t.deepEqual(s.scheduler.pending().map((q) => q.job), ['c']);
  s.finish(s.launched[0]!);
  t.deepEqual(s.launched.map((r) => r.job), ['a', 'b', 'c']);
  t.deepEqual(s.scheduler.pending(), []);
});

test('a job never has two live runs; its second start waits for the first', (t) => {
  const s = setup(3);
  t.teardown(s.stop);
  s.scheduler.enqueueStart('a');
  s.scheduler.enqueueStart('a');
  s.scheduler.enqueueStart('b');
  t.deepEqual(s.launched.map((r) => r.job), ['a', 'b']);
  s.finish(s.launched[0]!);
  t.deepEqual(s.launched.map((r) => r.job), ['a', 'b', 'a']);
});

test('a retry waits for its not-before time and continues the chain', (t) => {
  const s = setup(2);
  t.teardown(s.stop);
  const first = s.scheduler.enqueueStart('a');
  s.finish(s.launched[0]!);
  const retry = s.scheduler.enqueueRetry(s.history.getRun(first.id)!, 60_000, 'crash');
  t.is(s.launched.length, 1, 'not due yet');
  t.like(retry, { attempt: 2, chain_id: first.id, staging_path: `/s/a/${first.id}.duckdb`, state: 'queued' });
  t.is(s.history.getRun(first.id)!.next_attempt_at, retry.next_attempt_at);
  s.advance(60_001);
  s.scheduler.poke();
  t.deepEqual(s.launched.map((r) => r.id), [first.id, retry.id]);
});

test('a queued run of a job removed from the config is abandoned, not started', (t) => {
  const s = setup(2, ['a']);
  t.teardown(s.stop);
  const ghost = s.history.createQueuedRun({ id: 'ghost-1', job: 'gone', attempt: 1, chain_id: 'ghost-1', queued_at: 1 }, 1);
  s.scheduler.poke();
  t.deepEqual(s.abandoned, [ghost.id]);
  t.deepEqual(s.launched, []);
  t.regex(s.history.getRun(ghost.id)!.detail!, /'gone' is no longer in the configuration/);
});

test('run ids sort by time and keep job names file-safe', (t) => {
  const early = newRunId('a', Date.UTC(2026, 10, 26, 23, 5, 1, 7));
  const late = newRunId('a', Date.UTC(2026, 10, 26, 23, 5, 1, 8));
  t.regex(early, /^20261126-230501-007-a-[0-9a-f]{4}$/);
  t.true(early < late);
  t.is(safeName('x/../y z'), 'x_.._y_z');
  t.is(safeName('..'), '_');
});
