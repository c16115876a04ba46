import test from 'ava';
import Database from 'better-sqlite3';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultMigrationsDir, History, HistoryError, readMigrations, runView } from '../supervisor/history.js';
import type { Sample } from '../supervisor/types.js';

const tempDir = () => mkdtempSync(path.join(os.tmpdir(), 'dv-history-'));

function sample(at: number, rss: number): Sample {
  return { at, rss, swap: rss / 10, cpu: at / 1000, majflt_rate: 0, disk_free: 1e12, procs: 1 };
}

function newRun(history: History, id: string, job = 'job-a') {
  return history.createRun({ id, job, attempt: 1, chain_id: id, state: 'running', queued_at: Date.now() });
}

test('migrations are applied in numeric order once, with WAL on', (t) => {
  const dir = tempDir();
  const migrations = path.join(dir, 'migrations');
  mkdirSync(migrations);
  copyFileSync(path.join(defaultMigrationsDir, '001_init.sql'), path.join(migrations, '001_init.sql'));
  copyFileSync(path.join(defaultMigrationsDir, '002_cycles.sql'), path.join(migrations, '002_cycles.sql'));
  copyFileSync(path.join(defaultMigrationsDir, '003_sample_progress.sql'), path.join(migrations, '003_sample_progress.sql'));
  // 20 sorts before 4 as text; numeric order must still apply 004 first (020 depends on its table).
  writeFileSync(path.join(migrations, '020_uses_notes.sql'), 'INSERT INTO notes (text) VALUES (\'from 020\');');
  writeFileSync(path.join(migrations, '004_notes.sql'), 'CREATE TABLE notes (text TEXT);');
  const file = path.join(dir, 'history.sqlite');
  const history = History.open(file, { migrationsDir: migrations });
  t.deepEqual(history.appliedMigrations(), [1, 2, 3, 4, 20]);
  history.close();
  const reopened = History.open(file, { migrationsDir: migrations });
  t.deepEqual(reopened.appliedMigrations(), [1, 2, 3, 4, 20]);
  reopened.close();
  const db = new Database(file, { readonly: true });
  t.is((db.prepare('SELECT count(*) AS n FROM notes').get() as { n: number }).n, 1, 'migration 020 ran exactly once');
  t.is(db.pragma('journal_mode', { simple: true }), 'wal');
  db.close();
});

test('a failing migration rolls back and names the file', (t) => {
  const dir = tempDir();
  const migrations = path.join(dir, 'migrations');
  mkdirSync(migrations);
  copyFileSync(path.join(defaultMigrationsDir, '001_init.sql'), path.join(migrations, '001_init.sql'));
  writeFileSync(path.join(migrations, '002_broken.sql'), 'CREATE TABLE half (x INT); SELECT nope FROM missing;');
  const file = path.join(dir, 'history.sqlite');
  const error = t.throws(() => History.open(file, { migrationsDir: migrations }), { instanceOf: HistoryError });
  t.regex(error!.message, /002_broken\.sql failed/);
  const db = new Database(file, { readonly: true });
  t.is(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half'").get(), undefined, 'partial migration rolled back');
  t.deepEqual((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version), [1]);
  db.close();
});

test('a history written by a newer schema is refused with advice', (t) => {
  const dir = tempDir();
  const file = path.join(dir, 'history.sqlite');
  History.open(file).close();
  const db = new Database(file);
  db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, ?, 0)').run('999_future.sql');
  db.close();
  const error = t.throws(() => History.open(file), { instanceOf: HistoryError });
  t.regex(error!.message, new RegExp(`migration 999.*only knows up to ${readMigrations(defaultMigrationsDir).at(-1)!.version}`));
});

test('badly named migration files are an error', (t) => {
  const dir = tempDir();
  writeFileSync(path.join(dir, 'init.sql'), 'SELECT 1;');
  t.throws(() => readMigrations(dir), { message: /must be named NNN_name\.sql/ });
});

test('downsampling keeps at most about max samples, always the max-RSS one and the last one', (t) => {
  const history = History.open(path.join(tempDir(), 'history.sqlite'), { maxSamplesPerRun: 50 });
  newRun(history, 'r1');
  const total = 1237;
  const peakAt = 333; // an off-stride sample that must survive every thinning
  for (let i = 1; i <= total; i += 1) history.addSample('r1', sample(i * 250, i === peakAt ? 9_000_000 : 1_000_000 + (i % 7)));
  const stored = history.samples('r1');
  t.true(stored.length <= 52, `stored ${stored.length} samples`);
  t.true(stored.length >= 20, `stored only ${stored.length} samples`);
  t.is(stored.at(-1)!.seq, total, 'the last sample is kept');
  t.is(stored.at(-1)!.at, total * 250);
  t.truthy(stored.find((s) => s.seq === peakAt && s.rss === 9_000_000), 'the max-RSS sample is kept');
  t.deepEqual(stored.map((s) => s.seq), [...stored.map((s) => s.seq)].sort((a, b) => a - b));
  // Samples are spread over the whole run, not only its start.
  t.true(stored.filter((s) => s.seq > total / 2).length > 5);
  const run = history.getRun('r1')!;
  t.is(run.peak_rss_bytes, 9_000_000);
  t.is(run.peak_swap_bytes, 900_000);
  history.close();
});

test('short runs keep every sample', (t) => {
  const history = History.open(path.join(tempDir(), 'history.sqlite'), { maxSamplesPerRun: 50 });
  newRun(history, 'r1');
  for (let i = 1; i <= 40; i += 1) history.addSample('r1', sample(i, i * 1000));
  t.deepEqual(history.samples('r1').map((s) => s.seq), Array.from({ length: 40 }, (_, i) => i + 1));
  history.close();
});

test('samples carry the run\'s progress of their moment; none before the first report', (t) => {
  const file = path.join(tempDir(), 'history.sqlite');
  const history = History.open(file);
  newRun(history, 'r1');
  history.addSample('r1', sample(1, 1000));
  history.addSample('r1', sample(2, 1000), 0);
  history.addSample('r1', sample(3, 1000), 12.5);
  history.addSample('r1', sample(4, 1000), 40);
  history.close();
  const reopened = History.open(file);
  t.deepEqual(reopened.samples('r1').map((s) => s.progress_done), [null, 0, 12.5, 40]);
  reopened.close();
});

test('events, bad messages and run updates persist across reopen; views use ISO timestamps', (t) => {
  const file = path.join(tempDir(), 'history.sqlite');
  const history = History.open(file);
  newRun(history, 'r1');
  history.updateRunWithEvent('r1', { state: 'killed', reason: 'memory', ended_at: Date.UTC(2026, 10, 26, 23, 5, 1) }, { runId: 'r1', job: 'job-a', kind: 'kill', message: 'killing (memory)', measured: 600, limit: 512, data: { reason: 'memory' } });
  history.countBadMessage('r1', "invalid 'progress' message at done", 'job-a');
  history.countBadMessage('r1', 'message of 10485760 bytes exceeds the limit', 'job-a');
  history.close();
  const reopened = History.open(file);
  const run = reopened.getRun('r1')!;
  t.is(run.state, 'killed');
  t.is(run.bad_messages, 2);
  const events = reopened.events('r1');
  t.deepEqual(events.map((e) => e.kind), ['kill', 'bad_message', 'bad_message']);
  t.is(events[0]!.measured, 600);
  t.is(events[0]!.limit_value, 512);
  t.deepEqual(JSON.parse(events[0]!.data_json!), { reason: 'memory' });
  t.deepEqual(reopened.events('r1', 1).map((e) => e.message), ['message of 10485760 bytes exceeds the limit']);
  const view = runView(run);
  t.is(view.ended_at, '2026-11-26T23:05:01.000Z');
  t.regex(view.queued_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  reopened.close();
});

test('the queue persists and lists in due order; listRuns filters and sorts newest first', (t) => {
  const file = path.join(tempDir(), 'history.sqlite');
  const history = History.open(file);
  history.createQueuedRun({ id: 'b', job: 'j2', attempt: 1, chain_id: 'b', queued_at: 2000 }, 5000);
  history.createQueuedRun({ id: 'a', job: 'j1', attempt: 1, chain_id: 'a', queued_at: 1000 }, 1000);
  history.close();
  const reopened = History.open(file);
  t.deepEqual(reopened.queue().map((q) => q.run_id), ['a', 'b']);
  reopened.updateRun('a', { state: 'failed', reason: 'crash' });
  t.deepEqual(reopened.listRuns().map((r) => r.id), ['b', 'a']);
  t.deepEqual(reopened.listRuns({ state: 'failed' }).map((r) => r.id), ['a']);
  t.deepEqual(reopened.listRuns({ reason: 'crash', job: 'j1' }).map((r) => r.id), ['a']);
  t.deepEqual(reopened.listRuns({ job: 'nope' }), []);
  reopened.dequeue('a');
  t.deepEqual(reopened.queue().map((q) => q.run_id), ['b']);
  reopened.close();
});

function finishedRun(history: History, id: string, job: string, queuedAt: number, extra: Partial<Parameters<History['createRun']>[0]> = {}) {
  return history.createRun({ id, job, attempt: 1, chain_id: id, state: 'succeeded', queued_at: queuedAt, ended_at: queuedAt + 1000, ...extra });
}

test('samples of one event-loop turn are written in one transaction at its end', async (t) => {
  const file = path.join(tempDir(), 'history.sqlite');
  const history = History.open(file);
  t.teardown(() => history.close());
  for (const id of ['r1', 'r2', 'r3']) newRun(history, id);
  const reader = new Database(file, { readonly: true });
  t.teardown(() => reader.close());
  const stored = () => (reader.prepare('SELECT count(*) AS n FROM samples').get() as { n: number }).n;
  for (let i = 1; i <= 4; i += 1) for (const id of ['r1', 'r2', 'r3']) history.addSample(id, sample(i * 250, 1000 * i));
  t.is(stored(), 0, 'nothing is written while the turn goes on');
  await new Promise((resolve) => setImmediate(resolve));
  t.is(stored(), 12, 'the whole turn landed at once');
  t.deepEqual(history.samples('r2').map((s) => s.rss), [1000, 2000, 3000, 4000]);
});

test('peaks stay exact over samples that are not stored, and reach runs at the run end', (t) => {
  const file = path.join(tempDir(), 'history.sqlite');
  const history = History.open(file);
  newRun(history, 'r1');
  history.addSample('r1', sample(1000, 5_000_000));
  history.notePeaks('r1', { at: 1250, rss: 7_000_000, swap: 4_000_000 }); // a spike only the policy saw
  history.addSample('r1', sample(1500, 5_100_000));
  t.false(history.samples('r1').some((s) => s.rss === 7_000_000), 'the spike has no sample row');
  history.releaseSamples('r1');
  t.is(history.trackedRuns, 0, 'no per-run state is left behind');
  const run = history.getRun('r1')!;
  t.is(run.peak_rss_bytes, 7_000_000);
  t.is(run.peak_swap_bytes, 4_000_000);
  history.close();
});

test('peaks of a live run are written at most once a second of samples', (t) => {
  const history = History.open(path.join(tempDir(), 'history.sqlite'));
  t.teardown(() => history.close());
  newRun(history, 'r1');
  history.addSample('r1', sample(10_000, 1_000_000));
  history.flush();
  t.is(history.getRun('r1')!.peak_rss_bytes, 1_000_000, 'the first peak is written at once');
  history.notePeaks('r1', { at: 10_250, rss: 2_000_000, swap: 0 });
  history.flush();
  t.is(history.getRun('r1')!.peak_rss_bytes, 1_000_000, 'a rise within the second waits');
  history.notePeaks('r1', { at: 11_000, rss: 1_500_000, swap: 0 });
  history.flush();
  t.is(history.getRun('r1')!.peak_rss_bytes, 2_000_000, 'one second later the higher peak is written');
});

test('retention by count keeps the newest runs per job and never a live, queued or retrying one', (t) => {
  const history = History.open(path.join(tempDir(), 'history.sqlite'));
  t.teardown(() => history.close());
  const now = Date.now();
  for (let i = 0; i < 10; i += 1) {
    finishedRun(history, `a-${i}`, 'job-a', now - 100_000 + i * 1000);
    history.addSample(`a-${i}`, sample(now, 1000));
    history.addEvent({ runId: `a-${i}`, job: 'job-a', kind: 'state', message: 'succeeded' });
    history.releaseSamples(`a-${i}`);
  }
  for (let i = 0; i < 3; i += 1) finishedRun(history, `b-${i}`, 'job-b', now - 50_000 + i);
  // Protected although old: a failed first attempt whose retry is queued (attempts are counted along the chain) ...
  finishedRun(history, 'a-chain-1', 'job-a', now - 200_000, { state: 'failed', reason: 'crash' });
  history.createQueuedRun({ id: 'a-chain-2', job: 'job-a', attempt: 2, chain_id: 'a-chain-1', queued_at: now - 199_000 }, now + 60_000);
  // ... and a live run.
  history.createRun({ id: 'a-live', job: 'job-a', attempt: 1, chain_id: 'a-live', state: 'running', queued_at: now - 300_000 });

  const pruned = history.pruneRuns({ keepRuns: 3, keepDays: 0 }, now);
  // job-a's newest three by queue time are a-9, a-8, a-7; the older chain and the live run are kept anyway.
  t.deepEqual(pruned.map((run) => run.id), ['a-0', 'a-1', 'a-2', 'a-3', 'a-4', 'a-5', 'a-6']);
  const left = history.listRuns({ limit: 100 }).map((run) => run.id).sort();
  t.deepEqual(left, ['a-7', 'a-8', 'a-9', 'a-chain-1', 'a-chain-2', 'a-live', 'b-0', 'b-1', 'b-2'].sort());
  t.is(history.samples('a-0').length, 0, 'samples go with the run');
  t.is(history.events('a-0').length, 0, 'events go with the run');
  t.is(history.samples('a-9').length, 1, 'a kept run keeps its samples');
  t.deepEqual(history.pruneRuns({ keepRuns: 3, keepDays: 0 }, now), [], 'nothing more to prune');
});

test('retention by age prunes old finished runs and daemon events in small batches, never a run of an open cycle', (t) => {
  const history = History.open(path.join(tempDir(), 'history.sqlite'));
  t.teardown(() => history.close());
  const now = Date.now();
  const day = 86_400_000;
  for (let i = 0; i < 7; i += 1) finishedRun(history, `old-${i}`, `job-${i % 2}`, now - 40 * day + i);
  finishedRun(history, 'recent', 'job-0', now - 2 * day);
  history.createCycle({ id: 'c1', kind: 'schedule', root: 'job-0', jobs: ['job-0'], started_at: now - 41 * day });
  finishedRun(history, 'old-in-open-cycle', 'job-0', now - 40 * day, { cycle_id: 'c1' });
  history.addEvent({ kind: 'daemon', message: 'started long ago', at: now - 40 * day });
  history.addEvent({ kind: 'daemon', message: 'started lately', at: now - day });

  const batches: number[] = [];
  for (;;) {
    const pruned = history.pruneRuns({ keepRuns: 0, keepDays: 30 }, now, 3);
    batches.push(pruned.length);
    if (pruned.length < 3) break;
  }
  t.deepEqual(batches, [3, 3, 1], 'at most one batch per call');
  t.deepEqual(history.listRuns({ limit: 100 }).map((run) => run.id).sort(), ['old-in-open-cycle', 'recent']);
  t.is(history.counts().events, 1, 'the old daemon event is gone, the recent one stays');
  history.endCycle('c1', 'succeeded', now - 40 * day);
  t.deepEqual(history.pruneRuns({ keepRuns: 0, keepDays: 30 }, now).map((run) => run.id), ['old-in-open-cycle'], 'pruned once its cycle ended');
  history.pruneRuns({ keepRuns: 0, keepDays: 30 }, now);
  t.is(history.getCycle('c1'), undefined, 'an old ended cycle with no run left goes too');
});

test('retention off (both 0) deletes nothing', (t) => {
  const history = History.open(path.join(tempDir(), 'history.sqlite'));
  t.teardown(() => history.close());
  finishedRun(history, 'ancient', 'job', 0);
  t.deepEqual(history.pruneRuns({ keepRuns: 0, keepDays: 0 }), []);
  t.is(history.counts().runs, 1);
});
