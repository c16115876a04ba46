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
