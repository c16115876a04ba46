// An extractor that fails or is stopped while its table writers are still being created must end
// with its own exit code (1 failed, 3 stopped) and a message, never with a crash (SIGSEGV, 139):
// teardown waits for the DuckDB call in flight, then closes Appenders, connections, instance.
import path from 'node:path';
import test from 'ava';
import { compiledPath } from '../supervisor/paths.js';
import { spawnExtractor, tempDir, withDatabase, type Child } from './sdk-harness.js';

const teardownExtractorJs = compiledPath('test/extractors/sdk-teardown.ts');
/** The crash was a race; each variant runs several times so one lucky ordering cannot hide it. */
const REPEATS = 5;

function outcome(result: Awaited<Child['process']>): string {
  return `exit ${String(result.exitCode)} signal ${String(result.signal)}\n${result.all}`;
}

const failures: { mode: string; message: RegExp }[] = [
  { mode: 'throw-sync', message: /thrown right after declaring tables/ },
  { mode: 'throw-after-await', message: /thrown after one await/ },
  { mode: 'throw-in-unit', message: /thrown inside a unit/ },
];

for (const { mode, message } of failures) {
  test(`${mode}: the run exits 1 with the error on stderr, every time`, async (t) => {
    const dir = tempDir(t);
    for (let attempt = 0; attempt < REPEATS; attempt++) {
      const staging = path.join(dir, `staging-${attempt}.duckdb`);
      const result = await spawnExtractor(t, teardownExtractorJs, { staging, options: { mode, tables: 3 } }).process;
      t.is(result.signal, undefined, outcome(result));
      t.is(result.exitCode, 1, outcome(result));
      t.regex(result.stderr, new RegExp(`extractor 'sdk-teardown' failed: Error: teardown test: ${message.source}`));
      // The file was closed properly: it opens, and the failed unit left nothing behind.
      const units = await withDatabase(staging, async (query) => Number((await query('SELECT count(*) FROM _duckvisor_units'))[0]?.[0]));
      t.is(units, 0);
    }
  });
}

test('a unit that throws is rolled back; rows appended after it and the next unit commit', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const result = await spawnExtractor(t, teardownExtractorJs, { staging, options: { mode: 'unit-fails-then-continues', tables: 2 } }).process;
  t.is(result.exitCode, 0, outcome(result));
  await withDatabase(staging, async (query) => {
    for (const table of ['t0', 't1']) {
      t.deepEqual(await query(`SELECT key, n FROM ${table} ORDER BY n`), [
        ['early', 1n],
        ['between', 4n],
        ['good', 5n],
      ]);
    }
    t.deepEqual(await query('SELECT key FROM _duckvisor_units'), [['good']]);
  });
});

async function startAppending(t: Parameters<typeof tempDir>[0], staging: string): Promise<Child> {
  const child = spawnExtractor(t, teardownExtractorJs, { staging, options: { mode: 'append-until-stopped' } });
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    child.process.stderr.on('data', (data: Buffer) => {
      seen += data.toString();
      if (seen.includes('declared tables')) resolve();
    });
    void child.process.then((result) => reject(new Error(`the extractor ended before declaring its tables: ${outcome(result)}`)));
  });
  return child;
}

async function committedUnitsMatchRows(staging: string): Promise<{ units: number; rows: number }> {
  return withDatabase(staging, async (query) => ({
    units: Number((await query('SELECT count(*) FROM _duckvisor_units'))[0]?.[0]),
    rows: Number((await query(`SELECT count(*) FROM t0 WHERE key = 'loose'`))[0]?.[0]),
  }));
}

test('SIGTERM while tables are being created: exit 3 (stopped), staging consistent, every time', async (t) => {
  const dir = tempDir(t);
  for (let attempt = 0; attempt < REPEATS; attempt++) {
    const staging = path.join(dir, `staging-${attempt}.duckdb`);
    const child = await startAppending(t, staging);
    child.process.kill('SIGTERM');
    const result = await child.process;
    t.is(result.signal, undefined, outcome(result));
    t.is(result.exitCode, 3, outcome(result));
    t.regex(result.stderr, /extractor 'sdk-teardown' stopped by SIGTERM: rows not yet committed were discarded/);
    const { units, rows } = await committedUnitsMatchRows(staging);
    t.is(rows, units, 'each committed unit has exactly its one row; no half unit');
  }
});

test('SIGTERM twice, then an IPC stop: still one clean exit 3', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const child = await startAppending(t, staging);
  child.process.kill('SIGTERM');
  child.process.kill('SIGTERM');
  child.process.sendMessage({ type: 'stop', reason: 'operator' }).catch(() => undefined);
  const result = await child.process;
  t.is(result.signal, undefined, outcome(result));
  t.is(result.exitCode, 3, outcome(result));
  const { units, rows } = await committedUnitsMatchRows(staging);
  t.is(rows, units);
});

test('an IPC stop while tables are being created: the extractor winds down and exits 3', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const child = await startAppending(t, staging);
  await child.process.sendMessage({ type: 'stop', reason: 'operator' });
  const result = await child.process;
  t.is(result.signal, undefined, outcome(result));
  t.is(result.exitCode, 3, outcome(result));
  t.false(child.messages.some((message) => message['type'] === 'ready'));
  const { units, rows } = await committedUnitsMatchRows(staging);
  t.is(rows, units);
});
