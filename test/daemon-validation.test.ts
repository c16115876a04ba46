// Exit code 65 (EX_DATAERR) means "the output failed validation": the run ends failed/validation and is not
// retried as a crash unless retries.on names validation. Alert deliveries are stored with the run they are about.
import test from 'ava';
import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fixture, killQuietly, spawnDaemon, writeConfig } from './helpers/duckvisord.js';

const node = (script: string, ...args: string[]) => `[node, ${JSON.stringify(fixture(script))}${args.map((a) => `, ${JSON.stringify(a)}`).join('')}]`;

test('exit 65 is a validation failure: not retried by default, retried when retries.on names validation; alerts carry the run id', async (t) => {
  const paths = writeConfig(
    `  checked:
    command: ${node('validation-exit.mjs')}
    heartbeat: ipc
  plain-65:
    command: ${node('exit-code.mjs', '65')}
    heartbeat: none
  retried:
    command: ${node('exit-code.mjs', '65')}
    heartbeat: none
    retries: {max: 1, on: [validation]}
  crashing:
    command: ${node('exit-code.mjs', '3')}
    heartbeat: none
`,
    `defaults:
  retries: {max: 1, backoff: 100ms, factor: 1, max_backoff: 1s, jitter: 0, on: [crash]}
alerts:
  - on: [failed]
    command: ${node('record-alert.mjs', '__ALERTS__')}
`,
  );
  const alertsFile = path.join(paths.dir, 'alerts.jsonl');
  writeFileSync(paths.config, readFileSync(paths.config, 'utf8').replace('__ALERTS__', alertsFile));
  const daemon = spawnDaemon(paths.config, ['--once']);
  t.teardown(() => killQuietly(daemon.child.pid));
  const exit = await daemon.exited;
  t.is(exit.code, 1, daemon.output());

  const db = new Database(path.join(paths.stateDir, 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  const runs = (job: string) => db.prepare('SELECT id, attempt, state, reason, detail, exit_code FROM runs WHERE job = ? ORDER BY attempt').all(job) as any[];

  const checked = runs('checked');
  t.is(checked.length, 1, 'a validation failure is not retried as a crash');
  t.like(checked[0], { state: 'failed', reason: 'validation', exit_code: 65, detail: 'output validation failed (expected vs actual): units 10 expected, 7 committed' });

  const plain = runs('plain-65');
  t.is(plain.length, 1);
  t.like(plain[0], { state: 'failed', reason: 'validation', exit_code: 65 });
  t.regex(plain[0].detail, /exit code 65 \(EX_DATAERR\)/);

  const retried = runs('retried');
  t.deepEqual(retried.map((r) => [r.attempt, r.state, r.reason]), [[1, 'failed', 'validation'], [2, 'failed', 'validation']]);
  t.is((db.prepare("SELECT count(*) AS n FROM events WHERE kind = 'retries_exhausted' AND job = 'retried'").get() as { n: number }).n, 1);

  // A crash is still retried by the default policy.
  t.deepEqual(runs('crashing').map((r) => [r.attempt, r.reason]), [[1, 'crash'], [2, 'crash']]);

  // Every delivery is stored as an event of the run it is about.
  const alertEvents = db.prepare("SELECT run_id, job, message FROM events WHERE kind = 'alert' ORDER BY id").all() as any[];
  t.true(alertEvents.length >= 5, JSON.stringify(alertEvents));
  const runIds = new Set(db.prepare('SELECT id FROM runs').all().map((r: any) => r.id));
  for (const event of alertEvents) {
    t.true(runIds.has(event.run_id), `alert event has run_id ${event.run_id}`);
    t.is((db.prepare('SELECT job FROM runs WHERE id = ?').get(event.run_id) as { job: string }).job, event.job);
  }
  t.true(alertEvents.some((event) => event.run_id === checked[0].id && /failed → command: .* delivered/.test(event.message)));
  const delivered = readFileSync(alertsFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  t.true(delivered.some((event) => event.run === checked[0].id && event.reason === 'validation'));
});
