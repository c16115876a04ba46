// The publisher child: kill -9 mid-publish keeps the previous version; a locked warehouse is waited
// for (naming the holder's pid); tables of another job are not overwritten; views are recreated.
import { copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { parseChildMessage } from '../extractors/sdk/protocol.js';
import { lockHolder, seededRandom, spawnPublisher, tempDir, withDatabase } from './sdk-harness.js';

/** Builds a staging file with `rows` rows in `big` and a view over it, as an extractor would leave it. */
async function makeStaging(file: string, rows: number, version: number): Promise<void> {
  await withDatabase(file, async (query) => {
    await query(`CREATE TABLE big AS SELECT range AS i, 'v${version}-' || range AS label, range * ${version}.5 AS value FROM range(${rows})`);
    await query(`CREATE TABLE small AS SELECT ${version} AS version`);
    await query(`CREATE TABLE _duckvisor_views (name VARCHAR PRIMARY KEY, sql VARCHAR NOT NULL)`);
    await query(`INSERT INTO _duckvisor_views VALUES ('big_summary', 'SELECT count(*) AS n, max(label) AS top FROM big')`);
    await query('CHECKPOINT');
  });
}

async function fingerprint(warehouse: string): Promise<string> {
  return withDatabase(warehouse, async (query) => {
    const [[count, sum, version, viewCount]] = (await query(
      `SELECT (SELECT count(*) FROM big), (SELECT sum(hash(b)) FROM big b), (SELECT version FROM small), (SELECT n FROM big_summary)`,
    )) as [[bigint, bigint, number, bigint]];
    const [[registry]] = (await query(`SELECT count(*) FROM _duckvisor_publishes`)) as [[bigint]];
    return `big=${count}/${sum} small=${version} view=${viewCount} registry=${registry}`;
  });
}

async function publishOk(t: ExecutionContext, staging: string, warehouse: string, job = 'numbers'): Promise<void> {
  const result = await spawnPublisher(t, { staging, warehouse, tables: ['big', 'small'], job }).process;
  if (result.exitCode !== 0) throw new Error(`publisher exited ${result.exitCode ?? result.signal}:\n${result.all}`);
}

test('kill -9 of the publisher mid-publish leaves the previous version; the next publish succeeds', async (t) => {
  const dir = tempDir(t);
  const v1Warehouse = path.join(dir, 'v1-warehouse.duckdb');
  const v1Staging = path.join(dir, 'v1.duckdb');
  const v2Template = path.join(dir, 'v2-template.duckdb');
  await makeStaging(v1Staging, 1000, 1);
  await publishOk(t, v1Staging, v1Warehouse);
  t.false(existsSync(v1Staging), 'staging removed after its publish');
  const v1Print = await fingerprint(v1Warehouse);
  await makeStaging(v2Template, 3_000_000, 2);

  // Calibrate: how long does an uninterrupted publish of v2 take, from its 'publishing' log to exit?
  const calibration = path.join(dir, 'calibration');
  copyFileSync(v1Warehouse, `${calibration}-warehouse.duckdb`);
  copyFileSync(v2Template, `${calibration}-staging.duckdb`);
  const timed = spawnPublisher(t, { staging: `${calibration}-staging.duckdb`, warehouse: `${calibration}-warehouse.duckdb`, tables: ['big', 'small'] });
  await timed.waitFor((message) => String(message['msg']).startsWith('publishing'));
  const started = Date.now();
  t.is((await timed.process).exitCode, 0);
  const publishMs = Date.now() - started;
  const v2Print = await fingerprint(`${calibration}-warehouse.duckdb`);
  t.not(v1Print, v2Print);

  const random = seededRandom(0xb0b);
  const outcomes: string[] = [];
  for (let trial = 0; trial < 5; trial++) {
    const warehouse = path.join(dir, `w${trial}.duckdb`);
    const staging = path.join(dir, `s${trial}.duckdb`);
    copyFileSync(v1Warehouse, warehouse);
    copyFileSync(v2Template, staging);
    const publisher = spawnPublisher(t, { staging, warehouse, tables: ['big', 'small'] });
    await publisher.waitFor((message) => String(message['msg']).startsWith('publishing'));
    const delay = Math.floor(random() * publishMs * 0.9);
    await sleep(delay);
    publisher.process.kill('SIGKILL');
    const result = await publisher.process;
    const print = await fingerprint(warehouse);
    if (result.signal === 'SIGKILL') {
      // Atomic: either the whole previous version or (killed after COMMIT) the whole new one.
      t.true(print === v1Print || print === v2Print, `trial ${trial}: warehouse is neither version: ${print}`);
      if (print === v1Print) t.true(existsSync(staging), `trial ${trial}: staging must survive until its publish commits`);
      outcomes.push(print === v1Print ? `killed after ${delay}ms: previous version intact` : `killed after ${delay}ms: after COMMIT`);
    } else {
      t.is(print, v2Print);
      outcomes.push('finished before the kill');
    }
    if (existsSync(staging)) await publishOk(t, staging, warehouse);
    t.is(await fingerprint(warehouse).then((p) => p.replace(/registry=\d+/, '')), v2Print.replace(/registry=\d+/, ''), `trial ${trial}: the next publish succeeds`);
    t.false(existsSync(staging));
  }
  t.log(`uninterrupted publish took ${publishMs} ms; ${outcomes.join('; ')}`);
});

test('a warehouse held open by another process: the publisher waits, names the holder pid, and succeeds after it exits', async (t) => {
  const dir = tempDir(t);
  const warehouse = path.join(dir, 'warehouse.duckdb');
  const staging = path.join(dir, 'staging.duckdb');
  await makeStaging(staging, 10, 1);
  const holder = execa(process.execPath, [lockHolder, warehouse], { reject: false, buffer: false });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    holder.stdout.on('data', (data: Buffer) => {
      if (data.toString().includes('holding')) resolve();
    });
    void holder.then(() => reject(new Error('the lock holder exited early')));
  });

  const publisher = spawnPublisher(t, { staging, warehouse, tables: ['big', 'small'] });
  const waiting = await publisher.waitFor((message) => message['type'] === 'log' && String(message['msg']).startsWith('waiting for warehouse lock'));
  t.is(waiting['msg'], `waiting for warehouse lock (held by pid ${holder.pid})`);
  t.is(waiting['level'], 'warn');
  await publisher.waitFor((message) => message['type'] === 'heartbeat');
  t.true(existsSync(staging), 'nothing is touched while waiting');
  holder.kill('SIGTERM');
  await holder;
  const result = await publisher.process;
  t.is(result.exitCode, 0, result.all);
  for (const message of publisher.messages) t.true(parseChildMessage(message).ok, JSON.stringify(message));
  t.regex(await fingerprint(warehouse), /^big=10\/\d+ small=1 view=10 registry=3$/);
  t.false(existsSync(staging));
});

test('the publisher refuses to overwrite a table another job published', async (t) => {
  const dir = tempDir(t);
  const warehouse = path.join(dir, 'warehouse.duckdb');
  await makeStaging(path.join(dir, 'a.duckdb'), 10, 1);
  await publishOk(t, path.join(dir, 'a.duckdb'), warehouse, 'job-a');
  const before = await fingerprint(warehouse);
  await makeStaging(path.join(dir, 'b.duckdb'), 20, 2);
  const result = await spawnPublisher(t, { staging: path.join(dir, 'b.duckdb'), warehouse, tables: ['big', 'small'], job: 'job-b' }).process;
  t.is(result.exitCode, 1);
  t.regex(result.all ?? '', /table 'big' in the warehouse .* belongs to job 'job-a' .* refusing to overwrite it with job 'job-b'/);
  t.is(await fingerprint(warehouse), before);
  t.true(existsSync(path.join(dir, 'b.duckdb')), 'a failed publish keeps its staging file');
});
