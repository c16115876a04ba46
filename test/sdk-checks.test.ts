// Node extractor children end to end: the protocol messages they send, output validation failures,
// the memory self-check, a clean stop, bad options, and views reaching the warehouse.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { parseChildMessage } from '../extractors/sdk/protocol.js';
import { extractorEnv, numbersExtractorJs, runExtractorJs, spawnChild, spawnExtractor, spawnPublisher, tempDir, withDatabase } from './sdk-harness.js';

test('a complete run sends hello, heartbeats, progress and a validated ready', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options: { units: 12, rowsPerUnit: 50, sleepMs: 40 }, heartbeatTimeoutMs: 150 });
  const result = await child.process;
  t.is(result.exitCode, 0, result.all);
  for (const message of child.messages) t.true(parseChildMessage(message).ok, JSON.stringify(message));
  t.like(child.messages[0], { type: 'hello', protocol: 1, extractor: 'sdk-numbers' });
  t.true(child.messages.some((message) => message['type'] === 'heartbeat'));
  const progress = child.messages.filter((message) => message['type'] === 'progress');
  t.deepEqual(progress.map((message) => message['done']), Array.from({ length: 12 }, (_, i) => i + 1));
  t.deepEqual(child.messages.at(-1), {
    type: 'ready',
    tables: ['items', 'unit_meta'],
    rows: 12 * 50 + 12,
    validation: { ok: true, units: 12, expected_units: 12, problems: [] },
  });
});

test('progress reported faster than every 25 ms is sent spaced: values only grow, and the last one arrives before ready', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options: { units: 300, rowsPerUnit: 1, sleepMs: 0 } });
  const result = await child.process;
  t.is(result.exitCode, 0, result.all);
  const done = child.messages.filter((message) => message['type'] === 'progress').map((message) => Number(message['done']));
  t.true(done.length < 300, `${done.length} progress messages for 300 units`);
  t.true(done.every((value, index) => index === 0 || value > done[index - 1]!), JSON.stringify(done));
  t.is(done.at(-1), 300);
  const lastProgress = child.messages.findLastIndex((message) => message['type'] === 'progress');
  t.true(lastProgress >= 0 && lastProgress < child.messages.findIndex((message) => message['type'] === 'ready'));
});

test('a failed expectation fails the run and lists expected vs actual', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options: { units: 4, rowsPerUnit: 10, expectUnits: 5, expectRowsPerUnit: 12 } });
  const result = await child.process;
  t.is(result.exitCode, 65, "EX_DATAERR: the daemon records failed/validation and does not retry it as a crash");
  t.false(child.messages.some((message) => message['type'] === 'ready'), 'no ready, so no publish');
  t.regex(result.stderr, /output validation failed \(expected vs actual\):/);
  t.regex(result.stderr, /units: expected 5, got 4/);
  t.regex(result.stderr, /table 'items': expected 12 rows per unit, got 10 \(40 rows over 4 units\)/);
  t.notRegex(result.stderr, /\n\s+at /, 'a validation failure is a message, not a stack trace');
  const log = child.messages.find((message) => message['type'] === 'log' && message['level'] === 'error');
  t.regex(String(log?.['msg']), /units: expected 5, got 4/);
});

test('the memory self-check fails fast with its message before the supervisor would kill', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const limit = 300 * 1024 * 1024;
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options: { hogBytes: 512 * 1024 * 1024 }, rssLimitBytes: limit });
  const result = await child.process;
  t.is(result.exitCode, 1, result.all);
  t.regex(result.stderr, /extractor memory [\d.]+ [KMG]i?B exceeds 90% of the job's rss limit 300(\.0)? MiB .*; lower batch_rows or raise limits\.rss/);
});

test('stop: the extractor winds down, keeps its committed units, exits 3 without ready, and a later run resumes', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const options = { units: 200, rowsPerUnit: 20, sleepMs: 20 };
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options });
  await child.waitFor((message) => message['type'] === 'progress' && Number(message['done']) >= 5);
  await child.process.sendMessage({ type: 'stop', reason: 'operator' });
  const result = await child.process;
  t.is(result.exitCode, 3, result.all);
  t.false(child.messages.some((message) => message['type'] === 'ready'));
  const committed = await withDatabase(staging, async (query) => Number((await query('SELECT count(*) FROM _duckvisor_units'))[0]?.[0]));
  t.true(committed >= 5 && committed < 200);
  const resumed = spawnExtractor(t, numbersExtractorJs, { staging, options: { ...options, sleepMs: 0 } });
  t.is((await resumed.process).exitCode, 0);
  t.truthy(resumed.messages.find((message) => String(message['msg']).startsWith(`resuming: ${committed} units`)));
  t.like(resumed.messages.at(-1), { type: 'ready', rows: 200 * 21 });
});

test('invalid options are refused with the field named', async (t) => {
  const staging = path.join(tempDir(t), 'staging.duckdb');
  const result = await spawnExtractor(t, numbersExtractorJs, { staging, options: { units: 'many' } }).process;
  t.is(result.exitCode, 1);
  t.regex(result.stderr, /invalid options for extractor 'sdk-numbers':\n {2}- options\.units: /);
  const batch = await spawnExtractor(t, numbersExtractorJs, { staging, options: { batch_rows: 0 } }).process;
  t.regex(batch.stderr, /option 'batch_rows' must be an integer between 1 and 200000 \(got 0\)/);
});

test('a view declared with ctx.view() is created in the warehouse by the publisher', async (t) => {
  const dir = tempDir(t);
  const staging = path.join(dir, 'staging.duckdb');
  const warehouse = path.join(dir, 'warehouse.duckdb');
  const child = spawnExtractor(t, numbersExtractorJs, { staging, options: { units: 3, rowsPerUnit: 7, withView: true } });
  t.is((await child.process).exitCode, 0);
  const published = await spawnPublisher(t, { staging, warehouse, tables: ['items', 'unit_meta'] }).process;
  t.is(published.exitCode, 0, published.all);
  await withDatabase(warehouse, async (query) => {
    t.deepEqual(await query('SELECT unit_key, n FROM unit_totals ORDER BY unit_key'), [
      ['u-00000', 7n],
      ['u-00001', 7n],
      ['u-00002', 7n],
    ]);
    t.deepEqual(await query(`SELECT table_name, rows FROM _duckvisor_publishes ORDER BY table_name`), [
      ['items', 21n],
      ['unit_meta', 3n],
      ['unit_totals', null],
    ]);
  });
});

test('DUCKVISOR_MEMORY_TRACE writes memory figures per interval and at each phase of the run', async (t) => {
  const dir = tempDir(t);
  const trace = path.join(dir, 'memory.trace');
  const child = spawnChild(t, process.execPath, [runExtractorJs, numbersExtractorJs], {
    ...extractorEnv({ staging: path.join(dir, 'staging.duckdb'), options: { units: 8, rowsPerUnit: 2000, sleepMs: 60 } }),
    DUCKVISOR_MEMORY_TRACE: trace,
  });
  const result = await child.process;
  t.is(result.exitCode, 0, result.all);
  const lines = readFileSync(trace, 'utf8').trim().split('\n');
  const phases = lines.map((line) => /^\d+ ms (\S+) /.exec(line)?.[1]);
  t.true(phases.includes('tick'), lines.join('\n'));
  t.deepEqual(phases.filter((phase) => phase !== 'tick'), ['main-returned', 'committed', 'counted', 'closed']);
  for (const line of lines) {
    const figures = /rss ([\d.]+) peak ([\d.]+) heap_total ([\d.]+) heap_used ([\d.]+) external ([\d.]+) duckdb ([\d.]+)/.exec(line);
    t.truthy(figures, line);
    t.true(Number(figures![1]) > 10 && Number(figures![2]) >= Number(figures![1]), line);
  }
  // While the staging database is open, DuckDB's share is broken down by tag (e.g. IN_MEMORY_TABLE).
  t.regex(lines.find((line) => line.includes(' committed '))!, /duckdb [\d.]+ \(.*[A-Z_]+=[\d.]+/);
});
