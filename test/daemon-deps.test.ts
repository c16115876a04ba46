// Job dependencies (`after:`) with real daemons and real child processes: order within a cycle, skips when a
// dependency fails, `start --with-deps`, the "waiting for" status, and a plain start that runs anyway.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { ctl, ctlJson, fixture, killQuietly, spawnDaemon, startDaemon, waitFor, writeConfig } from './helpers/duckvisord.js';

const node = (script: string, ...args: string[]) => `[node, ${JSON.stringify(fixture(script))}${args.map((a) => `, ${JSON.stringify(a)}`).join('')}]`;

interface Row {
  id: string;
  job: string;
  attempt: number;
  state: string;
  reason: string | null;
  detail: string | null;
  started_at: number | null;
  ended_at: number | null;
  cycle_id: string | null;
}

function openHistory(t: { teardown(fn: () => void): void }, stateDir: string): Database.Database {
  const db = new Database(path.join(stateDir, 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  return db;
}

/** The final run of each job (highest attempt, latest queued), by job. */
function finalRuns(db: Database.Database): Map<string, Row> {
  const rows = db.prepare('SELECT * FROM runs ORDER BY queued_at, attempt').all() as Row[];
  return new Map(rows.map((row) => [row.job, row]));
}

test('--once runs dependencies first: every dependent starts after all its dependencies ended; a non-autostart dependency is pulled in', async (t) => {
  const paths = writeConfig(
    `  raw-a:
    command: ${node('sleeper.mjs', '0.8', '4')}
    heartbeat: stdout
  raw-b:
    command: ${node('sleeper.mjs', '0.3', '3')}
    heartbeat: stdout
    autostart: false
  derived:
    command: ${node('sleeper.mjs', '0.3', '3')}
    heartbeat: stdout
    after: [raw-a, raw-b]
  report:
    command: ${node('sleeper.mjs', '0.2', '2')}
    heartbeat: stdout
    after: [derived]
`,
  );
  const daemon = spawnDaemon(paths.config, ['--once']);
  t.teardown(() => killQuietly(daemon.child.pid));
  const exit = await daemon.exited;
  t.is(exit.code, 0, daemon.output());
  t.regex(daemon.output(), /all 4 job\(s\) succeeded/);
  // The summary lists the jobs in dependency order.
  const order = [...daemon.output().matchAll(/^(raw-a|raw-b|derived|report)\s/gm)].map((m) => m[1]);
  t.deepEqual(order, ['raw-a', 'raw-b', 'derived', 'report']);

  const db = openHistory(t, paths.stateDir);
  const runs = finalRuns(db);
  t.is(runs.size, 4);
  for (const run of runs.values()) t.is(run.state, 'succeeded', `${run.job}: ${run.detail}`);
  const [a, b, derived, report] = ['raw-a', 'raw-b', 'derived', 'report'].map((job) => runs.get(job)!);
  t.true(derived!.started_at! >= a!.ended_at!, 'derived started after raw-a ended');
  t.true(derived!.started_at! >= b!.ended_at!, 'derived started after raw-b ended');
  t.true(report!.started_at! >= derived!.ended_at!, 'report started after derived ended');
  // One cycle holds all four, and it is recorded as succeeded.
  const cycles = new Set([...runs.values()].map((run) => run.cycle_id));
  t.is(cycles.size, 1);
  const cycle = db.prepare('SELECT kind, outcome, jobs_json FROM cycles WHERE id = ?').get([...cycles][0]) as { kind: string; outcome: string; jobs_json: string };
  t.deepEqual({ ...cycle, jobs: JSON.parse(cycle.jobs_json) }, { kind: 'once', outcome: 'succeeded', jobs_json: cycle.jobs_json, jobs: ['raw-a', 'raw-b', 'derived', 'report'] });
});

test('--once: a dependency killed for memory skips its dependents (transitively) with the reason; exit 1 and the summary shows them', async (t) => {
  const paths = writeConfig(
    `  raw:
    command: ${node('leaker.mjs', '200')}
    heartbeat: none
    limits: {rss: 120MiB}
  side:
    command: ${node('sleeper.mjs', '0.2', '2')}
    heartbeat: stdout
  derived:
    command: ${node('sleeper.mjs', '0.2', '2')}
    heartbeat: stdout
    after: [raw, side]
  report:
    command: ${node('sleeper.mjs', '0.2', '2')}
    heartbeat: stdout
    after: [derived]
`,
  );
  const daemon = spawnDaemon(paths.config, ['--once']);
  t.teardown(() => killQuietly(daemon.child.pid));
  const exit = await daemon.exited;
  t.is(exit.code, 1, daemon.output());
  t.regex(daemon.output(), /derived\s+\S+\s+1\s+skipped\s+dependency\s+.*dependency raw failed \(killed: memory\)/);
  t.regex(daemon.output(), /report\s+\S+\s+1\s+skipped\s+dependency\s+.*dependency derived was skipped/);
  t.regex(daemon.output(), /NOT all jobs succeeded: .*2 skipped/);

  const db = openHistory(t, paths.stateDir);
  const runs = finalRuns(db);
  t.like(runs.get('raw'), { state: 'killed', reason: 'memory' });
  t.like(runs.get('side'), { state: 'succeeded' });
  t.like(runs.get('derived'), { state: 'skipped', reason: 'dependency', detail: 'dependency raw failed (killed: memory)', started_at: null });
  t.like(runs.get('report'), { state: 'skipped', reason: 'dependency', detail: 'dependency derived was skipped (dependency raw failed (killed: memory))' });
  // Each skip is an event of its run.
  const events = db.prepare("SELECT message FROM events WHERE run_id = ? AND kind = 'state'").all(runs.get('derived')!.id) as { message: string }[];
  t.deepEqual(events.map((e) => e.message), ['skipped: dependency raw failed (killed: memory)']);
  t.is((db.prepare('SELECT outcome FROM cycles').get() as { outcome: string }).outcome, 'failed');
});

test('a dependency that fails and then succeeds on its retry lets its dependents run after the retry', async (t) => {
  const paths = writeConfig(
    `  raw:
    command: ${node('flaky.mjs')}
    heartbeat: none
  derived:
    command: ${node('sleeper.mjs', '0.2', '2')}
    heartbeat: stdout
    after: [raw]
`,
    'defaults:\n  retries: {max: 2, backoff: 300ms, factor: 1, max_backoff: 1s, jitter: 0, on: [crash]}\n',
  );
  const daemon = spawnDaemon(paths.config, ['--once']);
  t.teardown(() => killQuietly(daemon.child.pid));
  const exit = await daemon.exited;
  t.is(exit.code, 0, daemon.output());
  const db = openHistory(t, paths.stateDir);
  const raw = db.prepare("SELECT * FROM runs WHERE job = 'raw' ORDER BY attempt").all() as Row[];
  t.deepEqual(raw.map((r) => [r.attempt, r.state]), [[1, 'failed'], [2, 'succeeded']]);
  const derived = db.prepare("SELECT * FROM runs WHERE job = 'derived'").all() as Row[];
  t.is(derived.length, 1, 'derived was not skipped by the first failure');
  t.is(derived[0]!.state, 'succeeded');
  t.true(derived[0]!.started_at! >= raw[1]!.ended_at!);
});

test('start --with-deps runs the dependencies first; status shows "waiting for: a, b"; a plain start runs anyway with a warning', async (t) => {
  // a and b run until the test opens their gate (a file), so the checks made while they run do not race them.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const gate = (job: string): string => path.join(dir, `${job}.open`);
  const paths = writeConfig(
    `  a:
    command: ${node('gate.mjs', gate('a'))}
    heartbeat: stdout
    autostart: false
  b:
    command: ${node('gate.mjs', gate('b'))}
    heartbeat: stdout
    autostart: false
  c:
    command: ${node('sleeper.mjs', '0.3', '3')}
    heartbeat: stdout
    autostart: false
    after: [a, b]
`,
    '',
    dir,
  );
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));

  const started = await ctlJson(paths.config, 'start', 'c', '--with-deps');
  t.is(started.run, null, 'c waits: it has no run yet');
  t.is(started.cycle.kind, 'with-deps');
  t.is(started.cycle.root, 'c');
  t.deepEqual(started.cycle.members.map((m: any) => m.job), ['a', 'b', 'c']);

  // A second cycle over the same jobs is refused while this one runs.
  const again = await ctl(['--config', paths.config, 'start', 'c', '--with-deps']);
  t.is(again.code, 1);
  t.regex(again.stderr, /still part of cycle/);

  const status = await ctlJson(paths.config, 'status');
  const c = status.jobs.find((job: any) => job.job === 'c');
  t.deepEqual(c.waiting_for, ['a', 'b']);
  t.is(c.cycle, started.cycle.id);
  const human = await ctl(['--config', paths.config, 'status']);
  t.regex(human.stdout, /^c\s+waiting\s.*waiting for: a, b$/m);

  writeFileSync(gate('a'), '');
  writeFileSync(gate('b'), '');
  const cycle = await waitFor(async () => {
    const view = await ctlJson(paths.config, 'history', '--limit', '10');
    return view.length >= 3 && view.every((run: any) => run.state === 'succeeded') ? view : null;
  }, 30_000, 'a, b and c to succeed');
  const byJob = new Map<string, any>(cycle.map((run: any) => [run.job, run]));
  t.true(Date.parse(byJob.get('c').started_at) >= Date.parse(byJob.get('a').ended_at));
  t.true(Date.parse(byJob.get('c').started_at) >= Date.parse(byJob.get('b').ended_at));
  t.is(byJob.get('c').cycle_id, started.cycle.id);
  const finished = await waitFor(async () => {
    const view = (await ctlJson(paths.config, 'status')).jobs;
    return view.every((job: any) => job.waiting_for === null) ? view : null;
  }, 5_000, 'no job waiting');
  t.truthy(finished);

  // A second cycle in which a dependency is stopped: c is skipped; then a plain start of c still runs, and says so.
  rmSync(gate('a'));
  rmSync(gate('b'));
  const second = await ctl(['--config', paths.config, 'start', 'c', '--with-deps']);
  t.is(second.code, 0, second.stderr);
  t.regex(second.stdout, /^c\s+waiting\s+-\s+waiting for: a, b$/m);
  await ctlJson(paths.config, 'stop', 'a');
  const skipped = await waitFor(async () => {
    const runs = await ctlJson(paths.config, 'history', 'c', '--limit', '1');
    return runs[0]?.state === 'skipped' ? runs[0] : null;
  }, 20_000, 'c skipped after a was stopped');
  t.is(skipped.detail, 'dependency a failed (killed: operator)');
  writeFileSync(gate('b'), '');
  await waitFor(async () => (await ctlJson(paths.config, 'status')).daemon.live === 0, 20_000, 'b to end');

  const plain = await ctl(['--config', paths.config, 'start', 'c']);
  t.is(plain.code, 0, plain.stderr);
  t.regex(plain.stdout, /c: queued as run /);
  t.regex(plain.stderr, /warning: c: started without waiting for its dependencies \(explicit start\): a failed \(killed: operator\) in its current cycle/);
  const plainJson = await ctlJson(paths.config, 'start', 'b');
  t.is(plainJson.warning, null, 'b has no dependencies: no warning');
  const ran = await waitFor(async () => {
    const runs = await ctlJson(paths.config, 'history', 'c', '--limit', '1');
    return runs[0]?.state === 'succeeded' ? runs[0] : null;
  }, 20_000, 'the plain start of c to succeed');
  t.is(ran.cycle_id, null, 'a plain start belongs to no cycle');
  const detail = await ctlJson(paths.config, 'show', ran.id);
  t.true(detail.events.some((event: any) => event.kind === 'dependency_warning'));
});

test('stopping a job that waits for its dependencies skips it and its dependents in the cycle', async (t) => {
  const paths = writeConfig(
    `  a:
    command: ${node('sleeper.mjs', '3', '10')}
    heartbeat: stdout
    autostart: false
  b:
    command: ${node('sleeper.mjs', '0.2', '2')}
    heartbeat: stdout
    autostart: false
    after: [a]
  c:
    command: ${node('sleeper.mjs', '0.2', '2')}
    heartbeat: stdout
    autostart: false
    after: [b]
`,
  );
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const started = await ctlJson(paths.config, 'start', 'c', '--with-deps');
  const stopped = await ctlJson(paths.config, 'stop', 'b');
  t.like(stopped.runs[0], { job: 'b', state: 'skipped', reason: 'operator' });
  const c = await waitFor(async () => {
    const runs = await ctlJson(paths.config, 'history', 'c', '--limit', '1');
    return runs[0]?.state === 'skipped' ? runs[0] : null;
  }, 10_000, 'c skipped');
  t.is(c.detail, 'dependency b was skipped (cancelled by operator while waiting for its dependencies in cycle ' + started.cycle.id + ')');
  // a still runs to completion; the cycle then ends failed.
  const a = await waitFor(async () => {
    const runs = await ctlJson(paths.config, 'history', 'a', '--limit', '1');
    return runs[0]?.state === 'succeeded' ? runs[0] : null;
  }, 20_000, 'a to succeed');
  t.truthy(a);
  const outcome = await waitFor(async () => {
    const db = new Database(path.join(paths.stateDir, 'history.sqlite'), { readonly: true });
    try {
      return (db.prepare('SELECT outcome FROM cycles WHERE id = ?').get(started.cycle.id) as { outcome: string | null }).outcome;
    } finally {
      db.close();
    }
  }, 10_000, 'the cycle to end');
  t.is(outcome, 'failed');
});

test('a schedule tick of a job with dependents starts a cycle: the dependents run after it; a tick is skipped while the cycle is open', async (t) => {
  const paths = writeConfig(
    `  root:
    command: ${node('sleeper.mjs', '3', '3')}
    heartbeat: stdout
    autostart: false
    schedule: "*/2 * * * * *"
  derived:
    command: ${node('sleeper.mjs', '0.2', '2')}
    heartbeat: stdout
    autostart: false
    after: [root]
`,
  );
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const derived = await waitFor(async () => {
    const runs = await ctlJson(paths.config, 'history', 'derived', '--limit', '1');
    return runs[0]?.state === 'succeeded' ? runs[0] : null;
  }, 30_000, 'derived to succeed after a scheduled root');
  await ctlJson(paths.config, 'shutdown');
  await daemon.exited;
  const db = openHistory(t, paths.stateDir);
  const cycle = db.prepare('SELECT * FROM cycles WHERE id = ?').get(derived.cycle_id) as { kind: string; root: string; jobs_json: string };
  t.like(cycle, { kind: 'schedule', root: 'root', jobs_json: JSON.stringify(['root', 'derived']) });
  const root = db.prepare("SELECT * FROM runs WHERE job = 'root' AND cycle_id = ?").get(derived.cycle_id) as Row;
  t.is(root.state, 'succeeded');
  t.true(Date.parse(derived.started_at) >= root.ended_at!);
  // root runs 3 s on a 2 s schedule: the tick during its run found the cycle still open.
  const skips = db.prepare("SELECT count(*) AS n FROM events WHERE kind = 'schedule_skip' AND job = 'root'").get() as { n: number };
  t.true(skips.n >= 1, 'a tick was skipped while the cycle was open');
});
