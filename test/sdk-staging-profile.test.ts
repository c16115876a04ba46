// Staging profiles (extractors/sdk/limits.ts SMALL_STAGING): an extractor declared with staging: 'small'
// (mlflow-runs) writes its staging database with 16 KiB blocks, a bulk writer (mlflow-metric-history, the
// default) with DuckDB's 256 KiB; both run as extractor children (sdk-harness.ts) on the bundled sample
// store, and the staging files are read back with DuckDB. Staging checkpoints do not use FSST
// (limits.ts STAGING_DISABLED_COMPRESSION).
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { defineExtractor } from '../extractors/sdk/index.js';
import { projectRoot } from '../supervisor/paths.js';
import { numbersExtractorJs, spawnExtractor, tempDir, withDatabase } from './sdk-harness.js';

const sample = path.join(projectRoot, 'config', 'sample', 'mlruns');

/** Runs a built-in extractor on the sample store; returns the block size of the staging file it wrote. */
async function stagingBlockSize(t: ExecutionContext, extractor: string): Promise<unknown> {
  const staging = path.join(tempDir(t), `${extractor}.duckdb`);
  const result = await spawnExtractor(t, extractor, { staging, options: { source: sample }, heartbeatTimeoutMs: 30_000 }).process;
  t.is(result.exitCode, 0, result.all);
  return withDatabase(staging, async (query) => (await query('SELECT block_size FROM pragma_database_size()'))[0]?.[0]);
}

test('mlflow-runs (staging: small) writes 16 KiB blocks; mlflow-metric-history (bulk) keeps 256 KiB', async (t) => {
  t.is(await stagingBlockSize(t, 'mlflow-runs'), 16_384n);
  t.is(await stagingBlockSize(t, 'mlflow-metric-history'), 262_144n);
});

test('a staging checkpoint compresses without FSST (its analysis held several MiB outside the memory limit)', async (t) => {
  const staging = path.join(tempDir(t), 'numbers.duckdb');
  // ~300k rows: more than 16 MiB of WAL, so DuckDB checkpoints (and compresses) during the run.
  const result = await spawnExtractor(t, numbersExtractorJs, { staging, options: { units: 100, rowsPerUnit: 3000, sleepMs: 0 }, heartbeatTimeoutMs: 60_000 }).process;
  t.is(result.exitCode, 0, result.all);
  const methods = await withDatabase(staging, async (query) =>
    (await query("SELECT DISTINCT column_name || ':' || compression FROM pragma_storage_info('items') ORDER BY 1")).map((row) => String(row[0])),
  );
  t.true(methods.includes('i:BitPacking'), `a compressed checkpoint happened: ${methods.join(' ')}`);
  t.true(methods.some((method) => method.startsWith('label:')), methods.join(' '));
  t.false(methods.some((method) => method.endsWith(':FSST')), `no FSST segment: ${methods.join(' ')}`);
});

test('defineExtractor refuses an unknown staging profile', (t) => {
  t.throws(() => defineExtractor('x', async () => undefined, { staging: 'tiny' as 'small' }), { message: /staging must be 'bulk' or 'small'/ });
  t.is(defineExtractor('y', async () => undefined, { staging: 'small' }).staging, 'small');
  t.is(defineExtractor('z', async () => undefined).staging, undefined);
});
