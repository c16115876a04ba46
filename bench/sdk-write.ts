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

Notes: the RSS goal is not met on this run. The child's RSS climbs from ~123 MiB (after the first
units) to ~170 MiB over 2 M rows and flattens out; it does not come from JS accumulation (with
\`--max-old-space-size=48\` the growth is the same) nor from DuckDB's buffer pool (job option
\`duckdb_memory: 32MiB\` gives the same curve), so it is native memory kept by DuckDB/the allocator
while the table grows (\`MALLOC_ARENA_MAX=1\` saves ~8 MiB). Worth profiling with a 10 M-row run.
The load average was ~10 on this 2-core machine while it ran (other jobs), so times are noisy.
`;
  const resultsDir = path.join(projectRoot, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(path.join(resultsDir, 'sdk-write.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(path.join(resultsDir, 'sdk-write.md'), md);
  process.stdout.write(md);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
