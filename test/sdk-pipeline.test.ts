// An extractor's prepare step (extractors/sdk/api.ts ExtractorPrepare): it runs with the parsed options
// before DuckDB is loaded and the staging database opened, main receives what it returned, a rejected
// promise fails the run with its message, and a stop while it is pending ends the run as stopped.
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import { compiledPath } from '../supervisor/paths.js';
import { spawnExtractor, tempDir, withDatabase } from './sdk-harness.js';

const sdkUrl = pathToFileURL(compiledPath('extractors/sdk/index.ts')).href;

/** A tiny extractor module in `dir` whose prepare step is `prepareBody` (a function expression). */
function writeExtractor(dir: string, prepareBody: string): string {
  const file = path.join(dir, 'prepared.mjs');
  writeFileSync(
    file,
    `import { existsSync } from 'node:fs';
import { defineExtractor } from ${JSON.stringify(sdkUrl)};
export default defineExtractor('prepared', async (ctx, prepared) => {
  const seen = ctx.table('seen', { what: 'VARCHAR', value: 'VARCHAR' });
  const value = await prepared;
  ctx.expect({ units: 1 });
  await ctx.unit('only', async () => {
    seen.append(['value', value.label]);
    seen.append(['staging existed during prepare', String(value.stagingExisted)]);
  });
}, { prepare: ${prepareBody} });
`,
  );
  return file;
}

test('prepare runs before the staging database exists and main receives its value', async (t) => {
  const dir = tempDir(t);
  const staging = path.join(dir, 'staging.duckdb');
  const module = writeExtractor(
    dir,
    `async (options, log) => { log.info('preparing'); await new Promise((resolve) => setTimeout(resolve, 50)); return { label: options.label, stagingExisted: existsSync(process.env.DUCKVISOR_STAGING) }; }`,
  );
  const child = spawnExtractor(t, module, { staging, options: { label: 'from prepare' } });
  const result = await child.process;
  t.is(result.exitCode, 0, result.all);
  t.true(child.messages.some((message) => message['type'] === 'log' && message['msg'] === 'preparing'), 'the prepare step can log');
  await withDatabase(staging, async (query) => {
    t.deepEqual(await query('SELECT what, value FROM seen ORDER BY what'), [
      ['staging existed during prepare', 'false'],
      ['value', 'from prepare'],
    ]);
  });
});

test('a rejected prepare fails the run with its message; no staging database is created', async (t) => {
  const dir = tempDir(t);
  const staging = path.join(dir, 'staging.duckdb');
  const module = writeExtractor(dir, `async () => { throw new Error('the source is unreachable'); }`);
  const child = spawnExtractor(t, module, { staging });
  const result = await child.process;
  t.is(result.exitCode, 1, result.all);
  t.regex(result.all, /the source is unreachable/);
  t.false(child.messages.some((message) => message['type'] === 'ready'));
  t.false(existsSync(staging));
});

test('SIGTERM while prepare is pending: exit 3 (stopped), nothing written', async (t) => {
  const dir = tempDir(t);
  const staging = path.join(dir, 'staging.duckdb');
  const module = writeExtractor(dir, `(_options, log) => { log.info('prepare started'); return new Promise(() => setInterval(() => undefined, 1000)); }`);
  const child = spawnExtractor(t, module, { staging });
  await child.waitFor((message) => message['type'] === 'log' && message['msg'] === 'prepare started');
  child.process.kill('SIGTERM');
  const result = await child.process;
  t.is(result.signal, undefined, result.all);
  t.is(result.exitCode, 3, result.all);
  t.false(existsSync(staging));
});
