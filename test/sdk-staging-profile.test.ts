// Staging profiles (extractors/sdk/limits.ts SMALL_STAGING): an extractor declared with staging: 'small'
// (mlflow-runs) writes its staging database with 16 KiB blocks, a bulk writer (mlflow-metric-history, the
// default) with DuckDB's 256 KiB; both run as the daemon starts them on the bundled sample store, and the
// staging files are read back with DuckDB.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { defineExtractor } from '../extractors/sdk/index.js';
import { childEnv } from '../extractors/sdk/child-env.js';
import { extractorProcessEnv } from '../extractors/sdk/process-env.js';
import { compiledPath, projectRoot } from '../supervisor/paths.js';

const sample = path.join(projectRoot, 'config', 'sample', 'mlruns');

/** Runs a built-in extractor on the sample store; returns the block size of the staging file it wrote. */
async function stagingBlockSize(dir: string, extractor: string): Promise<bigint> {
  const staging = path.join(dir, `${extractor}.duckdb`);
  const result = await execa(process.execPath, [compiledPath('extractors/run-extractor.ts'), extractor], {
    env: {
      ...extractorProcessEnv(process.env, extractor),
      [childEnv.staging]: staging, [childEnv.options]: JSON.stringify({ source: sample }), [childEnv.heartbeatTimeout]: '30000',
      [childEnv.runId]: extractor, [childEnv.job]: extractor, [childEnv.attempt]: '1', [childEnv.protocol]: '1',
    },
    extendEnv: false,
    reject: false,
    timeout: 120_000,
  });
  if (result.exitCode !== 0) throw new Error(`${extractor} exited ${result.exitCode}: ${result.stderr}`);
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const instance = await DuckDBInstance.create(staging, { access_mode: 'READ_ONLY' });
  try {
    const connection = await instance.connect();
    const rows = (await connection.runAndReadAll('SELECT block_size FROM pragma_database_size()')).getRows();
    connection.closeSync();
    return rows[0]![0] as bigint;
  } finally {
    instance.closeSync();
  }
}

test('mlflow-runs (staging: small) writes 16 KiB blocks; mlflow-metric-history (bulk) keeps 256 KiB', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-staging-profile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.is(await stagingBlockSize(dir, 'mlflow-runs'), 16_384n);
  t.is(await stagingBlockSize(dir, 'mlflow-metric-history'), 262_144n);
});

test('defineExtractor refuses an unknown staging profile', (t) => {
  t.throws(() => defineExtractor('x', async () => undefined, { staging: 'tiny' as 'small' }), { message: /staging must be 'bulk' or 'small'/ });
  t.is(defineExtractor('y', async () => undefined, { staging: 'small' }).staging, 'small');
  t.is(defineExtractor('z', async () => undefined).staging, undefined);
});
