// Kill -9 of a writing extractor at random points, then resume and publish: the warehouse never sees
// a partial run, and the final tables equal an uninterrupted run's row for row (no unit written
// twice, none lost). Also: a SIGKILL between a unit's appends and its COMMIT leaves none of the unit.
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import { parseChildMessage } from '../extractors/sdk/protocol.js';
import { numbersExtractorJs, seededRandom, spawnExtractor, spawnPublisher, tempDir, withDatabase } from './sdk-harness.js';

const UNITS = 30;
const ROWS_PER_UNIT = 400;
/** Small batches, so a unit's rows are flushed into its open transaction several times before COMMIT. */
const options = { units: UNITS, rowsPerUnit: ROWS_PER_UNIT, sleepMs: 3, batch_rows: 150 };
const tables = ['items', 'unit_meta'];

/** Files shared by all trials of this process (the previous version and the uninterrupted run). */
const sharedDir = mkdtempSync(path.join(os.tmpdir(), 'dv-shared-'));
test.after.always(() => rmSync(sharedDir, { recursive: true, force: true }));

async function runToCompletion(t: ExecutionContext, staging: string, runOptions: Record<string, unknown> = options): Promise<void> {
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options: runOptions });
  const result = await child.process;
  if (result.exitCode !== 0) throw new Error(`extractor exited ${result.exitCode ?? result.signal}:\n${result.all}`);
  const ready = child.messages.find((message) => message['type'] === 'ready');
  if (ready === undefined) throw new Error(`extractor exited 0 without ready:\n${result.all}`);
  const parsed = parseChildMessage(ready);
  if (!parsed.ok) throw new Error(`ready message does not parse: ${parsed.error}`);
}

async function publish(t: ExecutionContext, staging: string, warehouse: string): Promise<void> {
  const publisher = spawnPublisher(t, { staging, warehouse, tables });
  const result = await publisher.process;
  if (result.exitCode !== 0) throw new Error(`publisher exited ${result.exitCode ?? result.signal}:\n${result.all}`);
}

/** A fingerprint of the warehouse's tables: row counts and an order-independent hash of all rows. */
async function fingerprint(warehouse: string): Promise<string> {
  return withDatabase(warehouse, async (query) => {
    const parts: string[] = [];
    for (const table of tables) {
      const [row] = await query(`SELECT count(*), coalesce(sum(hash(t)), 0) FROM ${table} t`);
      parts.push(`${table}:${String(row?.[0])}:${String(row?.[1])}`);
    }
    return parts.join(' ');
  });
}

/** The previous version of the tables (3 units) published into a template warehouse, once per process. */
let templateWarehouse: Promise<{ file: string; print: string }> | undefined;
function previousVersion(t: ExecutionContext): Promise<{ file: string; print: string }> {
  templateWarehouse ??= (async () => {
    const dir = sharedDir;
    const staging = path.join(dir, 'old.duckdb');
    const file = path.join(dir, 'template-warehouse.duckdb');
    await runToCompletion(t, staging, { ...options, units: 3 });
    await publish(t, staging, file);
    return { file, print: await fingerprint(file) };
  })();
  return templateWarehouse;
}

let referenceWarehouse: Promise<string> | undefined;
function uninterruptedRun(t: ExecutionContext): Promise<string> {
  referenceWarehouse ??= (async () => {
    const dir = sharedDir;
    const staging = path.join(dir, 'ref.duckdb');
    const file = path.join(dir, 'reference-warehouse.duckdb');
    await runToCompletion(t, staging);
    await publish(t, staging, file);
    return file;
  })();
  return referenceWarehouse;
}

/** Spawns the extractor and SIGKILLs it after it reported `atUnit` units plus `delayMs`; returns whether it died by the kill. */
async function killAt(t: ExecutionContext, staging: string, atUnit: number, delayMs: number): Promise<boolean> {
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options });
  try {
    await child.waitFor((message) => (atUnit === 0 ? message['type'] === 'hello' : message['type'] === 'progress' && Number(message['done']) >= atUnit));
  } catch {
    // It finished before reaching the kill point (all units were already committed): nothing to kill.
  }
  await sleep(delayMs);
  child.process.kill('SIGKILL');
  const result = await child.process;
  return result.signal === 'SIGKILL';
}

async function trials(t: ExecutionContext, seed: number, count: number): Promise<void> {
  const random = seededRandom(seed);
  const [previous, reference] = await Promise.all([previousVersion(t), uninterruptedRun(t)]);
  let kills = 0;
  for (let trial = 0; trial < count; trial++) {
    const dir = tempDir(t);
    const staging = path.join(dir, 'staging.duckdb');
    const warehouse = path.join(dir, 'warehouse.duckdb');
    copyFileSync(previous.file, warehouse);
    const killsThisTrial = 1 + Math.floor(random() * 2);
    for (let k = 0; k < killsThisTrial; k++) {
      const atUnit = Math.floor(random() * UNITS);
      const delayMs = Math.floor(random() * 12);
      if (await killAt(t, staging, atUnit, delayMs)) kills++;
      t.is(await fingerprint(warehouse), previous.print, `trial ${trial}: the warehouse changed after a kill at unit ${atUnit}+${delayMs}ms`);
    }
    await runToCompletion(t, staging);
    await publish(t, staging, warehouse);
    t.false(existsSync(staging), 'the staging file is deleted after its publish');
    await withDatabase(warehouse, async (query) => {
      await query(`ATTACH '${reference}' AS ref (READ_ONLY)`);
      for (const table of tables) {
        const [[missing]] = (await query(`SELECT count(*) FROM (SELECT * FROM ref.${table} EXCEPT ALL SELECT * FROM main.${table})`)) as [[bigint]];
        const [[extra]] = (await query(`SELECT count(*) FROM (SELECT * FROM main.${table} EXCEPT ALL SELECT * FROM ref.${table})`)) as [[bigint]];
        const [[mine, theirs]] = (await query(`SELECT (SELECT count(*) FROM main.${table}), (SELECT count(*) FROM ref.${table})`)) as [[bigint, bigint]];
        t.is(missing, 0n, `trial ${trial}: ${table} lost rows`);
        t.is(extra, 0n, `trial ${trial}: ${table} has rows the uninterrupted run does not`);
        t.is(mine, theirs, `trial ${trial}: ${table} row count differs`);
      }
      const badUnits = await query(`SELECT unit_key, count(*) FROM items GROUP BY unit_key HAVING count(*) <> ${ROWS_PER_UNIT}`);
      t.deepEqual(badUnits, [], `trial ${trial}: a unit was written twice or partially`);
      const [[units]] = (await query(`SELECT count(DISTINCT unit_key) FROM items`)) as [[bigint]];
      t.is(units, BigInt(UNITS));
    });
  }
  t.log(`seed ${seed}: ${count} trials, ${kills} children died by SIGKILL`);
  t.true(kills > 0, 'the kills landed while the extractor was running');
}

// 20 trials in total, in four tests so that AVA reports progress while they run.
for (const seed of [0x5eed0001, 0x5eed0002, 0x5eed0003, 0x5eed0004]) {
  test(`kill -9 at random points, then resume: tables equal an uninterrupted run (seed ${seed.toString(16)}, 5 trials)`, async (t) => {
    await trials(t, seed, 5);
  });
}

test('SIGKILL between a unit\'s appends and its COMMIT leaves none of the unit, nor of its group\'s uncommitted units', async (t) => {
  const dir = tempDir(t);
  const staging = path.join(dir, 'staging.duckdb');
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options: { ...options, holdInUnit: 'u-00005' } });
  await child.waitFor((message) => message['type'] === 'log' && message['msg'] === 'holding unit u-00005');
  child.process.kill('SIGKILL');
  t.is((await child.process).signal, 'SIGKILL');
  t.true(existsSync(`${staging}.wal`), 'the killed writer left a WAL (its flushed batches), to be replayed');
  await withDatabase(staging, async (query) => {
    // Units commit in groups: the committed keys are a prefix of u-00000..u-00004 (the rest waited for their group's COMMIT).
    const keys = (await query(`SELECT key FROM _duckvisor_units ORDER BY key`)).map((row) => String(row[0]));
    t.true(keys.length >= 1 && keys.length <= 5, `committed keys: ${keys.join(', ')}`);
    t.deepEqual(keys, ['u-00000', 'u-00001', 'u-00002', 'u-00003', 'u-00004'].slice(0, keys.length));
    const [[held]] = (await query(`SELECT count(*) FROM items WHERE unit_key = 'u-00005'`)) as [[bigint]];
    t.is(held, 0n, 'no row of the uncommitted unit survives, though 400 were flushed into its transaction');
    const perUnit = await query(`SELECT unit_key, count(*) FROM items GROUP BY unit_key ORDER BY unit_key`);
    t.deepEqual(perUnit, keys.map((key) => [key, BigInt(ROWS_PER_UNIT)]), 'exactly the committed units have rows, each all of them');
  });
  await runToCompletion(t, staging);
  await withDatabase(staging, async (query) => {
    const [[units, rows]] = (await query(`SELECT count(DISTINCT unit_key), count(*) FROM items`)) as [[bigint, bigint]];
    t.is(units, BigInt(UNITS));
    t.is(rows, BigInt(UNITS * ROWS_PER_UNIT));
  });
});
