// Extractor SDK write path: peak RSS of an extractor writing N vs 10×N rows (goal: 10× within 1.2×
// of 1×, i.e. streaming, not accumulating) and its rows/s vs DuckDB ingesting the same rows from a
// CSV with read_csv (the physical reference; goal: within 2×).
// Run: npx tsc -p . ; node dist/bench/sdk-write.js [baseRows]   (default 200000)
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, version as duckdbVersion } from '@duckdb/node-api';
import { execa } from 'execa';
import { compiledPath, projectRoot } from '../supervisor/paths.js';
import { machineLine } from './machine.js';

const baseRows = Number(process.argv[2] ?? 200_000);
const repeats = 3;
const extractorJs = compiledPath('bench/sdk-write-extractor.ts');
const runExtractorJs = compiledPath('extractors/run-extractor.ts');

interface Measurement {
  rows: number;
  peakRssBytes: number;
  /** From the child's `hello` to its `ready`: open staging, write, commit, checkpoint, close. */
  writeMs: number;
  rowsPerSecond: number;
}

function vmHwmBytes(pid: number): number {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function measureExtractor(rows: number, dir: string): Promise<Measurement> {
  const staging = path.join(dir, `staging-${rows}-${Date.now()}.duckdb`);
  const child = execa(process.execPath, [runExtractorJs, extractorJs], {
    ipc: true,
    serialization: 'json',
    env: { DUCKVISOR_STAGING: staging, DUCKVISOR_OPTIONS: JSON.stringify({ rows }), DUCKVISOR_HEARTBEAT_TIMEOUT_MS: '3000' },
  });
  let helloAt = 0;
  let readyAt = 0;
  let peak = 0;
  const poll = setInterval(() => {
    peak = Math.max(peak, vmHwmBytes(child.pid!));
  }, 10);
  child.on('message', (message: { type?: string }) => {
    if (message.type === 'hello') helloAt = performance.now();
    if (message.type === 'ready') {
      readyAt = performance.now();
      peak = Math.max(peak, vmHwmBytes(child.pid!));
    }
  });
  await child;
  clearInterval(poll);
  rmSync(staging, { force: true });
  if (readyAt === 0) throw new Error('the extractor did not send ready');
  const writeMs = readyAt - helloAt;
  return { rows, peakRssBytes: peak, writeMs, rowsPerSecond: rows / (writeMs / 1000) };
}

/** The same rows as a CSV, ingested by DuckDB with read_csv into a fresh file, with the same threads and a checkpoint. */
async function measureReadCsv(rows: number, dir: string): Promise<{ ms: number; rowsPerSecond: number }> {
  const csv = path.join(dir, `rows-${rows}.csv`);
  const maker = await DuckDBInstance.create(':memory:');
  const makerConnection = await maker.connect();
  await makerConnection.run(
    `COPY (SELECT 'run-' || (i % 1000) AS run_id, i AS step, i * 0.5 AS value, make_timestamp((1700000000000 + i) * 1000) AS ts FROM range(${rows}) r(i)) TO '${csv}' (HEADER)`,
  );
  makerConnection.closeSync();
  maker.closeSync();
  const file = path.join(dir, `csv-${rows}-${Date.now()}.duckdb`);
  const started = performance.now();
  const instance = await DuckDBInstance.create(file, { threads: '2' });
  const connection = await instance.connect();
  await connection.run(
    `CREATE TABLE metric_history AS SELECT * FROM read_csv('${csv}', header = true, columns = {'run_id': 'VARCHAR', 'step': 'BIGINT', 'value': 'DOUBLE', 'ts': 'TIMESTAMP'})`,
  );
  await connection.run('CHECKPOINT');
  connection.closeSync();
  instance.closeSync();
  const ms = performance.now() - started;
  rmSync(file, { force: true });
  rmSync(csv, { force: true });
  return { ms, rowsPerSecond: rows / (ms / 1000) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-bench-sdk-'));
try {
  const small: Measurement[] = [];
  const large: Measurement[] = [];
  const csv: { ms: number; rowsPerSecond: number }[] = [];
  for (let i = 0; i < repeats; i++) {
    small.push(await measureExtractor(baseRows, dir));
    large.push(await measureExtractor(baseRows * 10, dir));
    csv.push(await measureReadCsv(baseRows * 10, dir));
  }
  const rss1 = median(small.map((m) => m.peakRssBytes));
  const rss10 = median(large.map((m) => m.peakRssBytes));
  const sdkRate = median(large.map((m) => m.rowsPerSecond));
  const csvRate = median(csv.map((m) => m.rowsPerSecond));
  const rssRatio = rss10 / rss1;
  const speedRatio = csvRate / sdkRate;
  const command = `npx tsc -p . && node dist/bench/sdk-write.js ${baseRows}`;
  const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
  const result = {
    name: 'sdk-write',
    date: new Date().toISOString(),
    machine: machineLine(),
    duckdb: duckdbVersion(),
    command,
    rows: { base: baseRows, tenfold: baseRows * 10, columns: 'run_id VARCHAR, step BIGINT, value DOUBLE, ts TIMESTAMP', unit_rows: 10_000, batch_rows: 10_000 },
    repeats,
    peak_rss_bytes: { base: small.map((m) => m.peakRssBytes), tenfold: large.map((m) => m.peakRssBytes) },
    extractor_write_ms: { base: small.map((m) => Math.round(m.writeMs)), tenfold: large.map((m) => Math.round(m.writeMs)) },
    read_csv_ms: csv.map((m) => Math.round(m.ms)),
    summary: {
      rss_ratio_10x_vs_1x: +rssRatio.toFixed(3),
      rss_goal: '<= 1.2',
      rss_goal_met: rssRatio <= 1.2,
      sdk_rows_per_second: Math.round(sdkRate),
      read_csv_rows_per_second: Math.round(csvRate),
      read_csv_speed_over_sdk: +speedRatio.toFixed(3),
      speed_goal: '<= 2 (SDK within 2× of read_csv)',
      speed_goal_met: speedRatio <= 2,
    },
  };
  const md = `# SDK write path: memory and throughput

Machine: ${result.machine}; DuckDB ${result.duckdb}. Command: \`${command}\` (${repeats} repeats, medians below).

Extractor: \`bench/sdk-write-extractor.ts\` writes rows (${result.rows.columns}) through \`ctx.table().append()\`
in units of 10,000 rows (each unit one transaction with its checkpoint row), default \`batch_rows\` 10,000, DuckDB threads 2.
Time = from the child's \`hello\` to its \`ready\` (open staging, write, commit, CHECKPOINT, close).
Peak RSS = the child's VmHWM. Reference: DuckDB \`CREATE TABLE … AS SELECT * FROM read_csv(…)\` of the same rows
into a fresh file, threads 2, plus CHECKPOINT and close (CSV written beforehand, not timed).

| | ${baseRows.toLocaleString('en')} rows (1×) | ${(baseRows * 10).toLocaleString('en')} rows (10×) |
| --- | --- | --- |
| peak RSS (MiB), runs | ${small.map((m) => mib(m.peakRssBytes)).join(', ')} | ${large.map((m) => mib(m.peakRssBytes)).join(', ')} |
| write time (ms), runs | ${small.map((m) => Math.round(m.writeMs)).join(', ')} | ${large.map((m) => Math.round(m.writeMs)).join(', ')} |
| read_csv time (ms), runs | | ${csv.map((m) => Math.round(m.ms)).join(', ')} |

- Peak RSS 10× / 1×: **${rssRatio.toFixed(2)}** (goal ≤ 1.2: ${rssRatio <= 1.2 ? 'met' : 'NOT met'}).
- Rows/s: SDK **${Math.round(sdkRate).toLocaleString('en')}**, read_csv **${Math.round(csvRate).toLocaleString('en')}**; read_csv is **${speedRatio.toFixed(2)}×** faster (goal ≤ 2×: ${speedRatio <= 2 ? 'met' : 'NOT met'}).

Why 200,000 rows is a fair 1× (the RSS curve is measured per 200k rows with \`/proc/<pid>/status\` RssAnon at
each progress message): ~1/3 of the child's RSS is file-backed and constant (node + libduckdb.so, ~72 MiB);
the anonymous part oscillates with DuckDB's auto-checkpoint (every 16 MiB of WAL, ~500k rows: the rows
not yet checkpointed stay in memory, up to ~23 MiB, then drop). The 1× run covers part of one cycle plus the
final CHECKPOINT; both runs use the same unit size (10,000), batch_rows, threads and settings, and the peak
is the extractor child's own VmHWM. Over a longer range the goal is only just met: a 1 M vs 10 M probe with the
final code (one run each) gave 151 vs 181 MiB (1.20×); between 6 M and 10 M rows the troughs still rise ~15 MiB
(in-process runs show V8's heapTotal stepping 24 → 40 MiB at some point; not proven to be the whole rest).

What made RSS grow with the row count, and the fixes (each measured on the RSS curve over 2 M–10 M rows):
1. DuckDB kept every block it had checkpointed loaded (duckdb_memory(): BASE_TABLE 1 → 14 MiB over 2 M rows,
   bounded only by memory_limit, which defaulted to 80% of RAM when the job has no rss limit). The staging
   database now gets memory_limit = min(50% of limits.rss, 32 MiB) (\`STAGING_WRITER_MEMORY_BYTES\`; the
   job option \`duckdb_memory\` overrides): BASE_TABLE stays at 3–6 MiB. A unit larger than that spills to
   the temp directory (a 2 M-row unit still completes).
2. DuckDB's bundled jemalloc kept the buffers freed by each checkpoint as dirty pages (≈20 MiB of
   anonymous memory beyond what duckdb_memory() and the JS heap explain). run-extractor sets
   \`DUCKDB_JE_MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0\` before loading DuckDB (an operator's own value
   wins): that remainder stays at ~20–30 MiB instead of 30–45 MiB. The DuckDB settings
   allocator_flush_threshold, allocator_background_threads and allocator_bulk_deallocation_flush_threshold
   (tried at 1–4 MiB) did not change the curve.
3. The table writer created a new DuckDB data chunk per 2,048 rows; their native buffers are freed only when
   V8 collects the wrappers, which it does rarely because it cannot see native memory (a forced gc() every
   5 units flattened the curve). The writer now reuses one chunk per table (reset after each append).
Tried and rejected: checkpoint_threshold 4 MiB (smaller oscillation, but 2–3× slower and the allocator
remainder grew); 1 GiB (RSS grows linearly, ~5 MiB per 100k rows: the WAL'd rows stay in memory).
Not caused by: the JS heap (heapUsed stays 6–14 MiB), prepared statements (none are kept), appenders (one per
table, closed at the end). What remains: V8's young generation may grow once (heapTotal 24 → 40 MiB) late in a
long run, and one unit's rows live in DuckDB's transaction-local storage, so RSS grows with the unit size
(a 2 M-row unit peaked at 250 MiB): keep units to thousands–hundreds of thousands of rows.
The machine is shared (load average 7–17 during these runs), so times are noisy: read_csv varied 1.6–4.9 s
for 2 M rows between runs, the SDK 5.4–9.7 s.
`;
  const resultsDir = path.join(projectRoot, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(path.join(resultsDir, 'sdk-write.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(path.join(resultsDir, 'sdk-write.md'), md);
  process.stdout.write(md);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
