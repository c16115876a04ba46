import test from 'ava';
import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSameProcessAlive, processStartTime } from '../supervisor/recovery.js';
import { ctlJson, fixture, killQuietly, spawnDaemon, startDaemon, waitFor, writeConfig } from './helpers/duckvisord.js';

const node = (script: string, ...args: string[]) => `[node, ${JSON.stringify(fixture(script))}${args.map((a) => `, ${JSON.stringify(a)}`).join('')}]`;

test('--once runs autostart jobs with their retries and exits 0 when all succeed', async (t) => {
  const paths = writeConfig(
    `  quick:
    command: ${node('sleeper.mjs', '0.3', '3')}
    heartbeat: stdout
    autostart: true
  flaky:
    command: ${node('flaky.mjs')}
    heartbeat: none
    autostart: true
  manual:
    command: ${node('exit-code.mjs', '9')}
    autostart: false
`,
    'defaults:\n  retries: {max: 2, backoff: 200ms, factor: 2, max_backoff: 1s, jitter: 0.1, on: [crash]}\n',
  );
  const daemon = spawnDaemon(paths.config, ['--once']);
  t.teardown(() => killQuietly(daemon.child.pid));
  const exit = await daemon.exited;
  t.is(exit.code, 0, daemon.output());
  t.regex(daemon.output(), /^JOB\s+RUN\s+ATTEMPT\s+STATE/m);
  t.regex(daemon.output(), /flaky\s+\S+\s+2\s+succeeded/);
  t.regex(daemon.output(), /quick\s+\S+\s+1\s+succeeded/);
  t.notRegex(daemon.output(), /manual/);
  t.regex(daemon.output(), /all 2 job\(s\) succeeded/);
  const db = new Database(path.join(paths.stateDir, 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  const flaky = db.prepare("SELECT attempt, chain_id, state, reason, next_attempt_at FROM runs WHERE job = 'flaky' ORDER BY attempt").all() as any[];
  t.is(flaky.length, 2);
  t.like(flaky[0], { attempt: 1, state: 'failed', reason: 'crash' });
  t.truthy(flaky[0].next_attempt_at);
  t.like(flaky[1], { attempt: 2, state: 'succeeded', chain_id: flaky[0].chain_id });
});

test('--once exits 1 when a job ends failed after its retries; the summary says why', async (t) => {
  const paths = writeConfig(
    `  broken:
    command: ${node('exit-code.mjs', '3')}
    autostart: true
  fine:
    command: ${node('sleeper.mjs', '0.2', '2')}
    autostart: true
`,
    'defaults:\n  retries: {max: 1, backoff: 100ms, factor: 2, max_backoff: 1s, jitter: 0, on: [crash]}\n',
  );
  const daemon = spawnDaemon(paths.config, ['--once']);
  t.teardown(() => killQuietly(daemon.child.pid));
  const exit = await daemon.exited;
  t.is(exit.code, 1, daemon.output());
  t.regex(daemon.output(), /broken\s+\S+\s+2\s+failed\s+crash/);
  t.regex(daemon.output(), /NOT all jobs succeeded/);
  const db = new Database(path.join(paths.stateDir, 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  const exhausted = db.prepare("SELECT message FROM events WHERE kind = 'retries_exhausted' AND job = 'broken'").all() as any[];
  t.is(exhausted.length, 1);
});

test('a configuration error exits 78 (EX_CONFIG) with the precise message on stderr', async (t) => {
  const paths = writeConfig(`  bad:\n    command: []\n`);
  const daemon = spawnDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const exit = await daemon.exited;
  t.is(exit.code, 78);
  t.regex(daemon.output(), /configuration error/);
  t.regex(daemon.output(), new RegExp(`${paths.config.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+`));
  t.regex(daemon.output(), /command/);
});

test('SIGTERM stops live runs gracefully (interrupted, daemon shutdown) and re-raises the signal', async (t) => {
  const paths = writeConfig(
    `  long:
    command: ${node('sleeper.mjs', '60', '300')}
    heartbeat: stdout
    autostart: true
`,
    'defaults:\n  stop_grace: 2s\n  retries: {max: 3, backoff: 1h, factor: 2, max_backoff: 2h, jitter: 0, on: [interrupted]}\n',
  );
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const running = await waitFor(async () => {
    const status = await ctlJson(paths.config, 'status');
    return status.jobs[0].run?.state === 'running' ? status.jobs[0].run : null;
  }, 20_000, 'long to run');
  const childStart = processStartTime(running.pid)!;
  daemon.child.kill('SIGTERM');
  const exit = await daemon.exited;
  t.is(exit.signal, 'SIGTERM', daemon.output());
  t.false(isSameProcessAlive(running.pid, childStart), 'the run was stopped');
  const db = new Database(path.join(paths.stateDir, 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  const row = db.prepare('SELECT state, reason, detail FROM runs WHERE id = ?').get(running.id) as any;
  t.like(row, { state: 'interrupted', reason: 'shutdown', detail: 'daemon shutdown' });
  // The retry is persisted in the queue for the next start.
  const queued = db.prepare("SELECT r.attempt, r.chain_id FROM queue q JOIN runs r ON r.id = q.run_id WHERE q.job = 'long'").all() as any[];
  t.deepEqual(queued, [{ attempt: 2, chain_id: running.chain_id }]);
});

test('crash recovery: after kill -9 of the daemon no process of its runs survives, runs are interrupted, history is intact, retries are queued', async (t) => {
  const paths = writeConfig(
    `  alpha:
    command: ${node('sleeper.mjs', 'forever', '50')}
    heartbeat: stdout
    autostart: true
  beta:
    command: ${node('sleeper.mjs', 'forever', '50')}
    heartbeat: stdout
    autostart: true
  family:
    command: ${node('family.mjs')}
    heartbeat: stdout
    autostart: true
`,
    'recovery: kill\ndefaults:\n  stop_grace: 1s\n  retries: {max: 3, backoff: 1h, factor: 2, max_backoff: 2h, jitter: 0, on: [crash, interrupted]}\n',
  );
  const first = await startDaemon(paths.config);
  const tracked: Array<{ pid: number; start: string }> = [];
  t.teardown(() => {
    killQuietly(first.child.pid);
    for (const p of tracked) if (isSameProcessAlive(p.pid, p.start)) killQuietly(p.pid);
  });
  const runs = await waitFor(async () => {
    const status = await ctlJson(paths.config, 'status');
    const live = status.jobs.map((j: any) => j.run).filter((r: any) => r?.state === 'running' && r.progress_done >= 1);
    return live.length === 3 ? live : null;
  }, 30_000, 'three running jobs');
  const familyRun = runs.find((r: any) => r.job === 'family');
  const familyLog = await waitFor(() => {
    const text = readFileSync(familyRun.log_path, 'utf8');
    return /family setsid \d+/.test(text) ? text : null;
  }, 10_000, 'family to report its pids');
  const grandchildren = [...familyLog.matchAll(/family (?:child|setsid) (\d+)/g)].map((m) => Number(m[1]));
  t.is(grandchildren.length, 2);
  for (const run of runs) tracked.push({ pid: run.pid, start: run.pid_start_time });
  for (const pid of grandchildren) tracked.push({ pid, start: processStartTime(pid)! });
  t.is(tracked.length, 5);
  for (const p of tracked) t.true(isSameProcessAlive(p.pid, p.start), `pid ${p.pid} alive before the crash`);

  const historyFile = path.join(paths.stateDir, 'history.sqlite');
  await sleep(300); // let a few more samples land
  first.child.kill('SIGKILL');
  await first.exited;
  // Snapshot what the crashed daemon had written: every run row and every event must survive.
  const before = new Database(historyFile, { readonly: true });
  const runsBefore = before.prepare('SELECT id, job, attempt, chain_id, pid, pid_start_time, started_at FROM runs ORDER BY id').all();
  const eventsBefore = before.prepare('SELECT id, run_id, kind, message FROM events ORDER BY id').all();
  const samplesBefore = (before.prepare('SELECT count(*) AS n FROM samples').get() as any).n;
  before.close();
  t.true(eventsBefore.length >= 9);
  t.true(samplesBefore > 0);
  for (const p of tracked) t.true(isSameProcessAlive(p.pid, p.start), `pid ${p.pid} still alive after the daemon died`);

  const second = await startDaemon(paths.config);
  t.teardown(() => killQuietly(second.child.pid));
  for (const p of tracked) t.false(isSameProcessAlive(p.pid, p.start), `pid ${p.pid} (run or grandchild) survived recovery`);

  const db = new Database(historyFile, { readonly: true });
  t.teardown(() => db.close());
  const after = db.prepare('SELECT id, job, attempt, chain_id, pid, pid_start_time, started_at FROM runs WHERE id IN (' + runsBefore.map(() => '?').join(',') + ') ORDER BY id').all(...runsBefore.map((r: any) => r.id));
  t.deepEqual(after, runsBefore, 'every run row written before the crash is still there');
  const eventsAfter = db.prepare('SELECT id, run_id, kind, message FROM events WHERE id <= ? ORDER BY id').all((eventsBefore.at(-1) as any).id);
  t.deepEqual(eventsAfter, eventsBefore, 'every event written before the crash is still there');
  for (const run of runs) {
    const row = db.prepare('SELECT state, reason, detail FROM runs WHERE id = ?').get(run.id) as any;
    t.is(row.state, 'interrupted', `${run.job} interrupted`);
    t.is(row.reason, 'daemon_crash');
    t.regex(row.detail, /^the daemon stopped while the run was running; (killed its leftover processes \([\d, ]+\) on restart|no process of it was left)$/);
    const recovery = db.prepare("SELECT message, data_json FROM events WHERE run_id = ? AND kind = 'recovery'").get(run.id) as any;
    t.truthy(recovery, `${run.job} has a recovery event`);
    t.deepEqual(JSON.parse(recovery.data_json).survivors, []);
    const retry = db.prepare('SELECT r.attempt, r.chain_id, r.staging_path, r.state FROM queue q JOIN runs r ON r.id = q.run_id WHERE r.job = ?').get(run.job) as any;
    t.like(retry, { attempt: 2, chain_id: run.chain_id, staging_path: run.staging_path, state: 'queued' }, `${run.job} retry queued on the same chain`);
  }
  const familyRecovery = db.prepare("SELECT data_json FROM events WHERE run_id = ? AND kind = 'recovery'").get(familyRun.id) as any;
  const found: number[] = JSON.parse(familyRecovery.data_json).found;
  for (const pid of grandchildren) t.true(found.includes(pid), `grandchild ${pid} was found via group or parent links`);
  const status = await ctlJson(paths.config, 'status');
  for (const job of status.jobs) t.truthy(job.queued?.next_attempt_at, `${job.job} shows its next attempt`);

  await ctlJson(paths.config, 'shutdown');
  t.is((await second.exited).code, 0);
});

test('an extractor run publishes through the publisher: waits visibly on a locked warehouse, then succeeds and removes its staging file', async (t) => {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const { existsSync, mkdirSync } = await import('node:fs');
  const paths = writeConfig(
    `  tiny:
    extractor: ${JSON.stringify(fixture('tiny-extractor.mjs'))}
    options: {units: 30, delay_ms: 5}
    autostart: false
`,
  );
  const warehouse = path.join(paths.dir, 'warehouse', 'warehouse.duckdb');
  mkdirSync(path.dirname(warehouse), { recursive: true });
  // This test process holds the warehouse open, so the publish has to wait for it.
  const holder = await DuckDBInstance.create(warehouse);
  const holding = await holder.connect();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    holding.closeSync();
    holder.closeSync();
  };
  t.teardown(release);
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const { run } = await ctlJson(paths.config, 'start', 'tiny');
  const waiting = await waitFor(async () => {
    const status = await ctlJson(paths.config, 'status');
    const shown = status.jobs[0].run;
    return shown?.state === 'publishing' && /waiting for warehouse lock/.test(shown.status_note ?? '') ? shown : null;
  }, 60_000, 'the publish to wait on the locked warehouse');
  t.is(waiting.id, run.id);
  t.regex(waiting.status_note, new RegExp(`held by pid ${process.pid}`));
  t.true(existsSync(waiting.staging_path), 'staging is kept while unpublished');
  release();
  const done = await waitFor(async () => {
    const detail = await ctlJson(paths.config, 'show', run.id);
    return ['succeeded', 'failed', 'killed'].includes(detail.state) ? detail : null;
  }, 60_000, 'the publish to finish');
  t.is(done.state, 'succeeded', JSON.stringify(done.events.slice(-5)));
  t.is(done.rows_written, 30);
  t.is(done.progress_done, 30);
  t.is(done.status_note, null);
  t.deepEqual(done.result.tables, ['numbers']);
  t.false(existsSync(done.staging_path), 'the publisher removed the staging file after its commit');
  t.true(done.events.some((e: any) => e.kind === 'state' && /^publishing/.test(e.message)));
  await ctlJson(paths.config, 'shutdown');
  t.is((await daemon.exited).code, 0);
  const reader = await DuckDBInstance.create(warehouse, { access_mode: 'READ_ONLY' });
  const connection = await reader.connect();
  const rows = (await connection.runAndReadAll('SELECT count(*)::INTEGER AS n, count(DISTINCT n)::INTEGER AS d FROM numbers')).getRowObjects();
  connection.closeSync();
  reader.closeSync();
  t.deepEqual(rows, [{ n: 30, d: 30 }]);
});

test('a second SIGTERM forces: the group of a child that ignores SIGTERM is SIGKILLed at once, the run ends interrupted', async (t) => {
  const paths = writeConfig(
    `  stubborn:
    command: ${node('ignore-term.mjs')}
    heartbeat: none
    autostart: true
    stop_grace: 10m
`,
  );
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const running = await waitFor(async () => {
    const status = await ctlJson(paths.config, 'status');
    return status.jobs[0].run?.state === 'running' ? status.jobs[0].run : null;
  }, 20_000, 'stubborn to run');
  const start = processStartTime(running.pid)!;
  t.teardown(() => {
    if (isSameProcessAlive(running.pid, start)) killQuietly(running.pid);
  });
  daemon.child.kill('SIGTERM');
  await waitFor(() => /SIGTERM ignored/.test(readFileSync(running.log_path, 'utf8')), 20_000, 'the child to receive (and ignore) SIGTERM');
  t.true(isSameProcessAlive(running.pid, start), 'still alive during its 10-minute grace');
  daemon.child.kill('SIGTERM');
  const exit = await daemon.exited;
  t.is(exit.signal, 'SIGTERM', daemon.output());
  t.false(isSameProcessAlive(running.pid, start));
  const db = new Database(path.join(paths.stateDir, 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  t.like(db.prepare('SELECT state, reason, detail, signal FROM runs WHERE id = ?').get(running.id) as any, { state: 'interrupted', reason: 'shutdown', detail: 'daemon shutdown', signal: 'SIGKILL' });
});

test('run ends reach alert hooks and /metrics: a failed run delivers a JSON event to a command hook, recorded in history', async (t) => {
  const alertsFile = path.join(writeConfig('  x:\n    command: [true]\n').dir, 'alerts.jsonl');
  const paths = writeConfig(
    `  broken:
    command: ${node('exit-code.mjs', '4')}
    heartbeat: none
    autostart: false
`,
    `alerts:
  - on: [failed, retries_exhausted]
    command: [node, ${JSON.stringify(fixture('record-alert.mjs'))}, ${JSON.stringify(alertsFile)}]
defaults:
  retries: {max: 0, backoff: 1s, factor: 2, max_backoff: 1s, jitter: 0, on: [crash]}
`,
  );
  writeFileSync(paths.config, readFileSync(paths.config, 'utf8').replace('  socket: ./run/dv.sock', '  socket: ./run/dv.sock\n  http: 127.0.0.1:0'));
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const { run } = await ctlJson(paths.config, 'start', 'broken');
  const lines = await waitFor(() => {
    try {
      const text = readFileSync(alertsFile, 'utf8').trim().split('\n');
      return text.length >= 2 ? text.map((line) => JSON.parse(line)) : null;
    } catch {
      return null;
    }
  }, 30_000, 'two alert deliveries');
  const failed = lines.find((event: any) => event.event === 'failed');
  t.like(failed, { job: 'broken', run: run.id, attempt: 1, reason: 'crash', env_job: 'broken' });
  t.true(failed.log_tail.some((line: string) => /exiting with 4/.test(line)));
  t.truthy(lines.find((event: any) => event.event === 'retries_exhausted'));
  const recorded = await waitFor(async () => {
    const db = new Database(path.join(paths.stateDir, 'history.sqlite'), { readonly: true });
    try {
      const rows = db.prepare("SELECT message FROM events WHERE kind = 'alert'").all() as any[];
      return rows.length >= 2 ? rows : null;
    } finally {
      db.close();
    }
  }, 10_000, 'alert deliveries recorded as events');
  t.true(recorded.every((row: any) => /delivered/.test(row.message)));
  const address = /http listening.*address=([\d.]+:\d+)/.exec(daemon.output())?.[1];
  t.truthy(address, daemon.output());
  const metrics = await (await fetch(`http://${address}/metrics`)).text();
  t.regex(metrics, /job="broken"/);
  await ctlJson(paths.config, 'shutdown');
  t.is((await daemon.exited).code, 0);
});

test('recovery: adopt keeps a crashed daemon\'s live run under supervision instead of killing it', async (t) => {
  // A child that writes nothing: a chatty one would die of EPIPE on its stdout pipe when the daemon dies.
  const paths = writeConfig(
    `  quiet:
    command: [node, -e, "setInterval(() => {}, 1000)"]
    heartbeat: none
    autostart: true
`,
    'recovery: adopt\ndefaults:\n  stop_grace: 2s\n',
  );
  const first = await startDaemon(paths.config);
  t.teardown(() => killQuietly(first.child.pid));
  const running = await waitFor(async () => {
    const status = await ctlJson(paths.config, 'status');
    return status.jobs[0].run?.state === 'running' ? status.jobs[0].run : null;
  }, 20_000, 'quiet to run');
  t.teardown(() => {
    if (isSameProcessAlive(running.pid, running.pid_start_time)) killQuietly(running.pid);
  });
  first.child.kill('SIGKILL');
  await first.exited;
  const second = await startDaemon(paths.config);
  t.teardown(() => killQuietly(second.child.pid));
  t.true(isSameProcessAlive(running.pid, running.pid_start_time), 'the adopted process was left running');
  const status = await ctlJson(paths.config, 'status');
  t.is(status.jobs[0].run.id, running.id);
  t.is(status.jobs[0].run.state, 'running');
  const detail = await ctlJson(paths.config, 'show', running.id);
  t.true(detail.events.some((e: any) => e.kind === 'recovery' && /adopted/.test(e.message)));
  const stopped = await ctlJson(paths.config, 'stop', 'quiet');
  t.like(stopped.runs[0], { id: running.id, state: 'killed', reason: 'operator' });
  t.false(isSameProcessAlive(running.pid, running.pid_start_time));
  await ctlJson(paths.config, 'shutdown');
  t.is((await second.exited).code, 0);
});

test('SIGHUP reloads a valid config and keeps the old one when the new file is invalid', async (t) => {
  const paths = writeConfig(`  idle:\n    command: ${node('sleeper.mjs', '0.2', '2')}\n    autostart: false\n`);
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const original = readFileSync(paths.config, 'utf8');
  writeFileSync(paths.config, original.replace('concurrency: 3', 'concurrency: 1'));
  daemon.child.kill('SIGHUP');
  await waitFor(async () => (await ctlJson(paths.config, 'status')).daemon.concurrency === 1, 10_000, 'the reload to apply');
  await waitFor(() => /SIGHUP: configuration reloaded \(1 change/.test(daemon.output()), 10_000, 'the reload to be logged');
  writeFileSync(paths.config, original.replace('concurrency: 3', 'concurrency: -5'));
  daemon.child.kill('SIGHUP');
  await waitFor(() => /SIGHUP: reload refused/.test(daemon.output()), 10_000, 'the refusal to be logged');
  t.is((await ctlJson(paths.config, 'status')).daemon.concurrency, 1, 'the running config stays');
  writeFileSync(paths.config, original);
  daemon.child.kill('SIGTERM');
  t.is((await daemon.exited).signal, 'SIGTERM');
});

test('extractor children start with two malloc arenas unless the job sets its own; command jobs inherit the environment untouched', async (t) => {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const paths = writeConfig(
    `  defaulted:
    extractor: ${JSON.stringify(fixture('tiny-extractor.mjs'))}
    options: {units: 3, delay_ms: 0, table: defaulted, label_env: MALLOC_ARENA_MAX}
    autostart: true
  chosen:
    extractor: ${JSON.stringify(fixture('tiny-extractor.mjs'))}
    options: {units: 3, delay_ms: 0, table: chosen, label_env: MALLOC_ARENA_MAX}
    env: {MALLOC_ARENA_MAX: "4"}
    autostart: true
  script:
    command: [sh, -c, 'test -z "$MALLOC_ARENA_MAX"']
    autostart: true
`,
  );
  const daemon = spawnDaemon(paths.config, ['--once']);
  t.teardown(() => killQuietly(daemon.child.pid));
  const exit = await daemon.exited;
  t.is(exit.code, 0, daemon.output());
  const reader = await DuckDBInstance.create(path.join(paths.dir, 'warehouse', 'warehouse.duckdb'), { access_mode: 'READ_ONLY' });
  const connection = await reader.connect();
  const labels = async (table: string) =>
    (await connection.runAndReadAll(`SELECT DISTINCT label FROM ${table}`)).getRowObjects().map((row) => row['label']);
  t.deepEqual(await labels('defaulted'), ['2']);
  t.deepEqual(await labels('chosen'), ['4']);
  connection.closeSync();
  reader.closeSync();
});
