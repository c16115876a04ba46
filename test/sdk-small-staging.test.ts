// The small staging layout (limits.ts SMALL_STAGING, context.ts StagingLayout), driven through a real
// extractor child with staging: 'small' (test/extractors/sdk-small.ts): the staging file is attached with
// 2,048-row row groups, DuckDB's own memory stays at its small-store level however much the run writes
// (checkpoints every 256 KiB of WAL, cached blocks evicted after a commit once they pass 2 MiB), and a SIGKILLed attempt
// resumes through the attached file's WAL with every unit exactly once.
import { readFileSync, statSync } from 'node:fs';
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

test("DuckDB's memory stays at its small-store level through a long small-staging run", async (t) => {
  const dir = tempDir(t);
  const staging = path.join(dir, 'small.duckdb');
  const trace = path.join(dir, 'memory.trace');
  const env = {
    ...extractorEnv({ staging, options: { units: 12_000, rowsPerUnit: 12 }, heartbeatTimeoutMs: 60_000 }),
    DUCKVISOR_MEMORY_TRACE: trace,
    DUCKVISOR_MEMORY_TRACE_MS: '25',
  };
  const result = await spawnChild(t, process.execPath, [runExtractorJs, smallExtractorJs], env).process;
  t.is(result.exitCode, 0, result.all);
  // DuckDB's accounted memory (duckdb_memory(), MiB) at every trace line.
  const readings = readFileSync(trace, 'utf8').split('\n').flatMap((line) => {
    const match = / duckdb (\d+(?:\.\d+)?)/.exec(line);
    return match === null ? [] : [Number(match[1])];
  });
  t.true(readings.length >= 20, `trace lines: ${readings.length}`);
  const stagingMiB = statSync(staging).size / 1024 ** 2;
  // 144,000 rows: left to DuckDB, committed rows wait in memory until 16 MiB of WAL and checkpointed blocks stay
  // cached up to the 8 MiB memory_limit, so this run's DuckDB memory climbed to 7.5-7.7 MiB. With the small
  // layout the cache is evicted past 2 MiB (16 runs at once on 2 cores: peaks of 3.1-3.6 MiB).
  t.true(stagingMiB >= 3, `staging file ${stagingMiB.toFixed(1)} MiB`);
  t.true(Math.max(...readings) <= 4.5, `DuckDB memory peaked at ${Math.max(...readings)} MiB (${readings.length} readings)`);
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
