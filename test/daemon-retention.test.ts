// The daemon's steady-state history: finished runs beyond history.keep_runs are pruned at start (with their
// log files), and a live run stores about one sample a second while runs.peak_rss_bytes stays exact.
import test from 'ava';
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { History } from '../supervisor/history.js';
import { ctl, fixture, killQuietly, startDaemon, waitFor, writeConfig } from './helpers/duckvisord.js';

interface StoredRun {
  id: string;
  state: string;
  peak_rss_bytes: number;
}

test('start-up prunes finished runs beyond keep_runs with their logs; a live run stores ~1 sample/s and keeps an exact peak', async (t) => {
  const paths = writeConfig(
    `  old:
    command: [node, ${JSON.stringify(fixture('exit-code.mjs'))}, '0']
    heartbeat: none
    autostart: false
  sleepy:
    command: [node, ${JSON.stringify(fixture('sleeper.mjs'))}, 'forever']
    heartbeat: none
    autostart: false
`,
    `history:
  keep_runs: 3
  keep_days: 0
`,
  );
  // Eight finished runs of `old` from an earlier life of the daemon, each with its log file.
  mkdirSync(paths.stateDir, { recursive: true });
  const history = History.open(path.join(paths.stateDir, 'history.sqlite'));
  const logDir = path.join(paths.stateDir, 'logs', 'old');
  mkdirSync(logDir, { recursive: true });
  const seeded: string[] = [];
  for (let i = 0; i < 8; i += 1) {
    const id = `seed-${i}`;
    const log = path.join(logDir, `${id}.log`);
    writeFileSync(log, `run ${i}\n`);
    history.createRun({ id, job: 'old', attempt: 1, chain_id: id, state: 'succeeded', queued_at: 1_000_000 + i, ended_at: 1_000_100 + i, log_path: log });
    history.addEvent({ runId: id, job: 'old', kind: 'state', message: 'succeeded' });
    seeded.push(id);
  }
  history.close();

  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const db = new Database(path.join(paths.stateDir, 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  const runsOf = (job: string) => db.prepare('SELECT id, state, peak_rss_bytes FROM runs WHERE job = ? ORDER BY queued_at').all(job) as StoredRun[];

  await waitFor(() => runsOf('old').length === 3, 10_000, 'the start-up prune');
  t.deepEqual(runsOf('old').map((run) => run.id), ['seed-5', 'seed-6', 'seed-7'], 'the newest three are kept');
  for (const id of seeded) t.is(existsSync(path.join(logDir, `${id}.log`)), ['seed-5', 'seed-6', 'seed-7'].includes(id), `log of ${id}`);
  t.is((db.prepare("SELECT count(*) AS n FROM events WHERE run_id LIKE 'seed-%'").get() as { n: number }).n, 3, 'events of pruned runs are gone');

  t.is((await ctl(['--config', paths.config, 'start', 'sleepy'])).code, 0);
  const live = await waitFor(() => runsOf('sleepy').find((run) => run.state === 'running'), 15_000, 'sleepy running');
  const firstAt = await waitFor(() => (db.prepare('SELECT min(at) AS at FROM samples WHERE run_id = ?').get(live.id) as { at: number | null }).at, 10_000, 'a first sample');
  await sleep(4000);
  const stored = db.prepare('SELECT at, rss FROM samples WHERE run_id = ? ORDER BY seq').all(live.id) as { at: number; rss: number }[];
  const seconds = (stored.at(-1)!.at - firstAt) / 1000;
  // 250 ms sampling would store 4 a second; an idle run stores one per second plus the odd telling one.
  t.true(stored.length >= 3 && stored.length <= Math.ceil(seconds) + 4, `${stored.length} samples over ${seconds.toFixed(1)} s`);

  t.is((await ctl(['--config', paths.config, 'stop', 'sleepy'])).code, 0);
  const ended = await waitFor(() => runsOf('sleepy').find((run) => run.id === live.id && run.state !== 'running'), 15_000, 'sleepy stopped');
  const maxStored = Math.max(...(db.prepare('SELECT rss FROM samples WHERE run_id = ?').all(live.id) as { rss: number }[]).map((s) => s.rss));
  t.true(ended.peak_rss_bytes >= maxStored && maxStored > 0, `peak ${ended.peak_rss_bytes} vs the largest stored sample ${maxStored}`);
  await ctl(['--config', paths.config, 'shutdown']);
  await daemon.exited;
});
