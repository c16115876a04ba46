// Units committed in groups (extractors/sdk/checkpoint.ts): many units share one transaction, a unit
// that fails is dropped without losing the completed units of its group, and the rare unit whose own
// rows had to enter the shared transaction before failing takes its group down with a clear error,
// after which a retry runs it alone and the output is complete.
import path from 'node:path';
import test from 'ava';
import { compiledPath } from '../supervisor/paths.js';
import { spawnExtractor, tempDir, withDatabase } from './sdk-harness.js';

const groupsExtractorJs = compiledPath('test/extractors/sdk-groups.ts');

/** The expected (unit_key, rows) of `chunky`: every unit but the failing ones. */
function expectedUnits(units: number, rowsPerUnit: number, failing: number[], big?: { unit: number; rows: number }): [string, bigint][] {
  const out: [string, bigint][] = [];
  for (let u = 0; u < units; u++) {
    if (failing.includes(u)) continue;
    out.push([`g-${String(u).padStart(5, '0')}`, BigInt(u === big?.unit ? big.rows : rowsPerUnit)]);
  }
  return out;
}

test('many small units share transactions; every unit is committed once with all its rows', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const result = await spawnExtractor(t, groupsExtractorJs, { staging, options: { units: 300, rowsPerUnit: 7 } }).process;
  t.is(result.exitCode, 0, result.all);
  await withDatabase(staging, async (query) => {
    t.deepEqual(await query('SELECT unit_key, count(*) FROM chunky GROUP BY unit_key ORDER BY unit_key'), expectedUnits(300, 7, []));
    const [[units, transactions]] = (await query('SELECT count(*), count(DISTINCT committed_at) FROM _duckvisor_units')) as [[bigint, bigint]];
    t.is(units, 300n);
    // current_timestamp is the transaction's start: one value per group.
    t.true(transactions < 150n, `300 units committed in ${transactions} transactions`);
    t.log(`300 units committed in ${transactions} transactions`);
  });
});

test('a failing unit is dropped without a ROLLBACK: the completed units of its group and the next ones commit', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  // 1,500 rows per unit: a unit's rows cross the 2,048-row chunk boundary, so earlier units' rows are moved out
  // of the chunk while the failing unit is writing; batch_rows 4,000 makes the cache flush mid-group too.
  const failing = [3, 4, 10, 17, 18, 19, 29];
  const options = { units: 30, rowsPerUnit: 1500, failing, batch_rows: 4000 };
  const child = spawnExtractor(t, groupsExtractorJs, { staging, options });
  const result = await child.process;
  t.is(result.exitCode, 0, result.all);
  const ready = child.messages.find((message) => message['type'] === 'ready') as { skipped?: { key: string }[] } | undefined;
  t.deepEqual(ready?.skipped?.map((s) => s.key), failing.map((u) => `g-${String(u).padStart(5, '0')}`));
  await withDatabase(staging, async (query) => {
    const expected = expectedUnits(30, 1500, failing);
    t.deepEqual(await query('SELECT unit_key, count(*) FROM chunky GROUP BY unit_key ORDER BY unit_key'), expected);
    t.deepEqual(await query('SELECT unit_key, count(*) FROM rowwise GROUP BY unit_key ORDER BY unit_key'), expected.map(([key]) => [key, 100n]));
    const [[distinctRows, allRows]] = (await query('SELECT count(DISTINCT (unit_key, i)), count(*) FROM chunky')) as [[bigint, bigint]];
    t.is(distinctRows, allRows, 'no row written twice');
    t.deepEqual(
      (await query('SELECT key FROM _duckvisor_units ORDER BY key')).map((row) => row[0]),
      expected.map(([key]) => key),
    );
  });
});

test('a failing unit whose rows outgrew the cache rolls back its group, says so, and a retry runs it alone', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  // Unit 5 writes 210,000 rows (more than the Appender may cache) while units 0-4 wait for their COMMIT, then fails.
  const options = { units: 9, rowsPerUnit: 20, failing: [5], bigUnit: 5, bigRows: 210_000, sleepMs: 1 };
  const first = await spawnExtractor(t, groupsExtractorJs, { staging, options }).process;
  t.is(first.exitCode, 1, first.all);
  t.regex(first.all ?? '', /unit 'g-00005' failed after .* rolled back.*runs 'g-00005' in a transaction of its own/s);
  await withDatabase(staging, async (query) => {
    t.deepEqual(await query('SELECT key FROM _duckvisor_isolated_units'), [['g-00005']]);
    const [[rows]] = (await query(`SELECT count(*) FROM chunky WHERE unit_key = 'g-00005'`)) as [[bigint]];
    t.is(rows, 0n);
  });
  const second = await spawnExtractor(t, groupsExtractorJs, { staging, options }).process;
  t.is(second.exitCode, 0, second.all);
  await withDatabase(staging, async (query) => {
    t.deepEqual(await query('SELECT unit_key, count(*) FROM chunky GROUP BY unit_key ORDER BY unit_key'), expectedUnits(9, 20, [5]));
    const [[units]] = (await query('SELECT count(*) FROM _duckvisor_units')) as [[bigint]];
    t.is(units, 8n);
  });
});
