// The small staging layout (limits.ts SMALL_STAGING, context.ts StagingLayout), driven through a real
// extractor child with staging: 'small' (test/extractors/sdk-small.ts): the staging file is attached with
// 2,048-row row groups, and a SIGKILLed attempt
// resumes through the attached file's WAL with every unit exactly once.
import path from 'node:path';
import test from 'ava';
import { compiledPath } from '../supervisor/paths.js';
import { extractorEnv, runExtractorJs, spawnChild, tempDir, withDatabase } from './sdk-harness.js';

const smallExtractorJs = compiledPath('test/extractors/sdk-small.ts');

test('a small staging file is written in row groups of 2,048 rows', async (t) => {
  const staging = path.join(tempDir(t), 'small.duckdb');
  const child = spawnChild(t, process.execPath, [runExtractorJs, smallExtractorJs], extractorEnv({ staging, options: { units: 3000, rowsPerUnit: 10 }, heartbeatTimeoutMs: 30_000 }));
  const result = await child.process;
  t.is(result.exitCode, 0, result.all);
  await withDatabase(staging, async (query) => {
    t.deepEqual((await query('SELECT count(*), count(DISTINCT unit_key) FROM items'))[0], [30_000n, 3000n]);
    const [groups, largest] = (await query(
      "SELECT count(*), max(rows) FROM (SELECT row_group_id, max(start + count) - min(start) AS rows FROM pragma_storage_info('items') WHERE column_name = 'i' GROUP BY row_group_id)",
    ))[0]!;
    // DuckDB's default (122,880 rows) would hold all 30,000 rows in one row group.
    t.true(Number(groups) >= Math.ceil(30_000 / 2048), `row groups: ${String(groups)}`);
    t.true(Number(largest) <= 2048, `largest row group: ${String(largest)} rows`);
  });
});

test('a SIGKILLed small-staging attempt resumes from its attached file with every unit exactly once', async (t) => {
  const staging = path.join(tempDir(t), 'small.duckdb');
  const options = { units: 4000, rowsPerUnit: 6, sleepEvery: 50, sleepMs: 2 };
  const first = spawnChild(t, process.execPath, [runExtractorJs, smallExtractorJs], extractorEnv({ staging, options, heartbeatTimeoutMs: 30_000 }));
  await first.waitFor((message) => message['type'] === 'progress' && Number(message['done']) >= 1500);
  first.process.kill('SIGKILL');
  const killed = await first.process;
  t.is(killed.signal, 'SIGKILL', killed.all);
  const second = spawnChild(t, process.execPath, [runExtractorJs, smallExtractorJs], extractorEnv({ staging, options, heartbeatTimeoutMs: 30_000 }));
  const result = await second.process;
  t.is(result.exitCode, 0, result.all);
  const resumed = second.messages.find((message) => message['type'] === 'log' && /resuming: \d+ units were committed/.test(String(message['msg'])));
  t.truthy(resumed, `the second attempt resumed: ${JSON.stringify(second.messages.filter((message) => message['type'] === 'log'))}`);
  await withDatabase(staging, async (query) => {
    t.deepEqual((await query('SELECT count(*), count(DISTINCT unit_key || \'/\' || i), count(DISTINCT unit_key) FROM items'))[0], [24_000n, 24_000n, 4000n]);
    t.deepEqual((await query('SELECT count(*) FROM _duckvisor_units'))[0], [4000n]);
  });
});
