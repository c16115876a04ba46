// The `mlflow-artifacts` extractor alone, at the seed's scale and 10×: wall time, CPU time and peak RSS
// (VmHWM, polled every 20 ms and on every IPC message) of `node dist/extractors/run-extractor.js
// mlflow-artifacts` reading the per-subject signal CSVs, run as the daemon runs it. Each measurement
// carries a label (e.g. `before` / `after` a change) and a digest of every output table — row count
// and an order-sensitive hash over (insertion order, all columns) — so two builds can be shown to
// write exactly the same tables. `--root` points at another checkout's compiled tree (its dist/), so
// a baseline can be measured from a clean copy of an earlier commit.
//
// `--python` measures the Python way users have today instead (bench/python-way.py: MLflow client
// list_artifacts + download_artifacts + pandas.read_csv + DuckDB executemany in batches of 1000) on
// the same runs, under the label `python`; give it a narrow --filter so it finishes.
//
// Run: npx tsc -p . ; node dist/bench/artifacts-speed.js --label after [--root /path/to/checkout]
//      [--scales 1,10] [--sources file,sqlite] [--timeout 600] [--filter "params.imputation_method = 'SAITS'"]
//      [--python] [--render-only]
// Results: merged by (label, scale, source, filter) into bench/results/artifacts-speed.json, and
//          bench/results/artifacts-speed.md rendered from all of them.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, version as duckdbVersion } from '@duckdb/node-api';
import { execa } from 'execa';
import { childEnv } from '../extractors/sdk/protocol.js';
import { projectRoot } from '../supervisor/paths.js';
import { machineLine } from './machine.js';
import { watch } from './watch-process.js';

type Source = 'file' | 'sqlite';

interface TableDigest {
  rows: number;
  hash: string;
}

interface Measurement {
  label: string;
  filter: string;
  scale: number;
  source: Source;
  status: 'ok' | 'timeout' | 'failed';
  wallMs: number;
  cpuMs: number;
  peakRssBytes: number;
  rows: number;
  /** Runs done / total when the child stopped (a timed-out cell says how far it got). */
  runsDone: number;
  runsTotal: number;
  files: number;
  tables: Record<string, TableDigest>;
  commit: string;
  command: string;
  at: string;
  load: string;
  note?: string;
}

const args = process.argv.slice(2);
function option(name: string, fallback: string): string {
  const at = args.indexOf(`--${name}`);
  return at >= 0 && args[at + 1] !== undefined ? args[at + 1]! : fallback;
}
const label = option('label', 'current');
const root = path.resolve(option('root', projectRoot));
const scales = option('scales', '1,10').split(',').map(Number);
const sources = option('sources', 'file,sqlite').split(',') as Source[];
const timeoutMs = Number(option('timeout', '600')) * 1000;
const filter = option('filter', "params.imputation_method = 'SAITS'");
const pythonWay = args.includes('--python');
const renderOnly = args.includes('--render-only');
const python = path.join(projectRoot, '.venv', 'bin', 'python');
const SIGNAL_GLOB = 'signals/csv/*.csv';
const storesDir = path.join(projectRoot, 'bench', 'work', 'stores');
const resultsJson = path.join(projectRoot, 'bench', 'results', 'artifacts-speed.json');
const resultsMd = path.join(projectRoot, 'bench', 'results', 'artifacts-speed.md');

/** Row count and an order-sensitive hash of every user table in a staging file. */
async function digest(staging: string): Promise<Record<string, TableDigest>> {
  const instance = await DuckDBInstance.create(staging, { access_mode: 'READ_ONLY' });
  const connection = await instance.connect();
  try {
    const names = (await connection.runAndReadAll("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_duckvisor%' ESCAPE '\\' ORDER BY 1"))
      .getRows().map((row) => String(row[0]));
    const out: Record<string, TableDigest> = {};
    for (const name of names) {
      const columns = (await connection.runAndReadAll(`SELECT column_name FROM information_schema.columns WHERE table_name = '${name}' ORDER BY ordinal_position`)).getRows().map((row) => `"${String(row[0])}"`);
      const [row] = (await connection.runAndReadAll(`SELECT count(*)::BIGINT, coalesce(sum(hash(rowid, ${columns.join(', ')}) % 1000000007), 0)::VARCHAR FROM "${name}"`)).getRows();
      out[name] = { rows: Number(row![0]), hash: String(row![1]) };
    }
    return out;
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

async function measure(scale: number, source: Source, work: string): Promise<Measurement> {
  const store = path.join(storesDir, `seed-${scale}x`);
  if (!existsSync(path.join(store, 'store.json'))) throw new Error(`${store} is missing: generate it with node dist/bench/extract.js --scales ${scale} (bench/make-store.py)`);
  const staging = path.join(work, `artifacts-${label}-${scale}x-${source}.duckdb`);
  const options: Record<string, unknown> = {
    source: source === 'file' ? path.join(store, 'mlruns') : `sqlite:///${path.join(store, 'mlflow.db')}`,
    tables: [{ glob: SIGNAL_GLOB, table: 'signals' }],
    ...(filter !== '' ? { filter } : {}),
  };
  if (pythonWay) return measurePython(scale, source, store, work);
  const runner = path.join(root, 'dist', 'extractors', 'run-extractor.js');
  const env = {
    [childEnv.staging]: staging, [childEnv.options]: JSON.stringify(options), [childEnv.heartbeatTimeout]: '60000',
    [childEnv.runId]: `bench-artifacts-${scale}x-${source}`, [childEnv.job]: 'mlflow-artifacts', [childEnv.attempt]: '1', [childEnv.protocol]: '1',
  };
  const command = `${Object.entries(env).map(([k, v]) => `${k}='${v}'`).join(' ')} node ${runner} mlflow-artifacts`.replaceAll(`${projectRoot}/`, '');
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' / ');
  const child = execa(process.execPath, [runner, 'mlflow-artifacts'], { env, ipc: true, serialization: 'json', detached: true, reject: false, stdout: 'ignore', stderr: 'pipe' });
  let rows = 0;
  let runsDone = 0;
  let runsTotal = 0;
  const result = await watch(child, timeoutMs, (message) => {
    const m = message as { type?: string; rows?: number; done?: number; total?: number };
    if (m.type === 'ready' && typeof m.rows === 'number') rows = m.rows;
    if (m.type === 'progress') {
      runsDone = m.done ?? runsDone;
      runsTotal = m.total ?? runsTotal;
    }
  });
  const { timedOut, wallMs } = result;
  const ok = !timedOut && result.exitCode === 0 && rows > 0;
  const tables = ok ? await digest(staging) : {};
  rmSync(staging, { force: true });
  rmSync(`${staging}.wal`, { force: true });
  const commit = (await execa('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { reject: false })).stdout || (existsSync(path.join(root, 'COMMIT')) ? readFileSync(path.join(root, 'COMMIT'), 'utf8').trim() : 'unknown');
  return {
    label, filter, scale, source, status: timedOut ? 'timeout' : ok ? 'ok' : 'failed', wallMs, cpuMs: result.cpuMs, peakRssBytes: result.peakRssBytes, rows, runsDone, runsTotal,
    files: tables['artifacts']?.rows ?? 0, tables, commit, command, at: new Date().toISOString(), load,
    ...(ok ? {} : { note: timedOut ? `stopped at the ${timeoutMs / 1000} s cap after ${runsDone}/${runsTotal} runs` : result.stderr.split('\n').filter(Boolean).slice(-3).join(' | ') }),
  };
}

/** The Python way on the same runs: rows from its final JSON line (or its last heartbeat when capped). */
async function measurePython(scale: number, source: Source, store: string, work: string): Promise<Measurement> {
  const out = path.join(work, `python-${scale}x-${source}.duckdb`);
  const uri = source === 'file' ? `file://${path.join(store, 'mlruns')}` : `sqlite:///${path.join(store, 'mlflow.db')}`;
  const argv = [path.join(projectRoot, 'bench', 'python-way.py'), '--tool', 'artifacts', '--uri', uri, '--out', out, '--glob', SIGNAL_GLOB, ...(filter !== '' ? ['--filter', filter] : [])];
  const command = `.venv/bin/python ${argv.map((a) => (/[ *']/.test(a) ? `"${a}"` : a)).join(' ')}`.replaceAll(`${projectRoot}/`, '');
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' / ');
  const child = execa(python, argv, { detached: true, reject: false, env: { MLFLOW_ALLOW_FILE_STORE: 'true' } });
  const result = await watch(child, timeoutMs);
  const { timedOut, wallMs } = result;
  rmSync(out, { force: true });
  rmSync(`${out}.wal`, { force: true });
  const final = result.stdout.trim().split('\n').pop() ?? '';
  const beats = [...result.stderr.matchAll(/\[HEARTBEAT\] (\d+)\/(\d+) rows=(\d+)/g)];
  const lastBeat = beats.at(-1);
  const ok = !timedOut && result.exitCode === 0 && final.startsWith('{');
  const rows = ok ? (JSON.parse(final) as { rows: number }).rows : lastBeat ? Number(lastBeat[3]) : 0;
  return {
    label: 'python', filter, scale, source, status: timedOut ? 'timeout' : ok ? 'ok' : 'failed', wallMs, cpuMs: result.cpuMs, peakRssBytes: result.peakRssBytes, rows,
    runsDone: lastBeat ? Number(lastBeat[1]) : 0, runsTotal: lastBeat ? Number(lastBeat[2]) : 0, files: 0, tables: {}, commit: 'bench/python-way.py', command,
    at: new Date().toISOString(), load,
    ...(ok ? {} : { note: timedOut ? `stopped at the ${timeoutMs / 1000} s cap` : result.stderr.split('\n').filter(Boolean).slice(-2).join(' | ') }),
  };
}

const mib = (bytes: number): string => `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

function render(results: Measurement[], context: Record<string, string>): string {
  const lines = ['# mlflow-artifacts alone: time and peak RSS, per build', ''];
  for (const [k, v] of Object.entries(context)) lines.push(`- ${k}: ${v}`);
  const filters = [...new Set(results.map((r) => r.filter))];
  for (const f of filters) {
    lines.push('', `## Runs matching ${f === '' ? '(all runs)' : `\`${f}\``}`, '', '| label | build | store | source | status | runs | wall | CPU | peak RSS | rows | signals digest | load at start |', '|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of results.filter((m) => m.filter === f)) {
      const signals = r.tables['signals'];
      lines.push(`| ${r.label} | ${r.commit} | ${r.scale}× | ${r.source} | ${r.status}${r.note ? ` (${r.note})` : ''} | ${r.runsDone}/${r.runsTotal} | ${r.status === 'timeout' ? '> ' : ''}${seconds(r.wallMs)} | ${seconds(r.cpuMs)} | ${mib(r.peakRssBytes)} | ${r.rows} | ${signals ? `${signals.rows} rows, ${signals.hash}` : ''} | ${r.load} |`);
    }
    lines.push('', '| store | source | compared | wall ratio | CPU ratio |', '|---|---|---|---|---|');
    for (const after of results.filter((m) => m.filter === f && m.label === 'after' && m.status === 'ok')) {
      for (const other of results.filter((m) => m.filter === f && m.label !== 'after' && m.scale === after.scale && m.source === after.source)) {
        const capped = other.status === 'timeout' ? '> ' : '';
        const ratio = (theirs: number, ours: number): string =>
          capped !== '' && theirs < ours ? `n/a (capped at ${other.runsDone}/${other.runsTotal} runs)` : `${capped}${(theirs / ours).toFixed(1)}×`;
        lines.push(`| ${after.scale}× | ${after.source} | ${other.label} / after | ${ratio(other.wallMs, after.wallMs)} | ${ratio(other.cpuMs, after.cpuMs)} |`);
      }
    }
  }
  const labels = [...new Set(results.map((r) => r.label))];
  lines.push('', '## Peak RSS 1× → 10×', '', '| label | source | 1× | 10× | ratio |', '|---|---|---|---|---|');
  for (const l of labels) {
    for (const small of results.filter((r) => r.label === l && r.scale === 1 && r.filter === filter)) {
      const big = results.find((r) => r.label === l && r.scale === 10 && r.source === small.source && r.filter === small.filter);
      if (big) lines.push(`| ${l} | ${small.source} | ${mib(small.peakRssBytes)} | ${mib(big.peakRssBytes)} | ${(big.peakRssBytes / small.peakRssBytes).toFixed(2)} |`);
    }
  }
  lines.push('', '## Commands', '');
  for (const r of results) lines.push(`- ${r.label} ${r.scale}× ${r.source} (${r.filter}): \`${r.command}\``);
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const previous = existsSync(resultsJson) ? (JSON.parse(readFileSync(resultsJson, 'utf8')) as { context: Record<string, string>; results: Measurement[] }) : { context: {}, results: [] };
  const work = mkdtempSync(path.join(os.tmpdir(), 'dv-bench-artifacts-'));
  const fresh: Measurement[] = [];
  for (const m of previous.results) m.filter ??= "params.imputation_method = 'SAITS'";
  try {
    if (renderOnly) scales.length = 0;
    for (const scale of scales) {
      for (const source of sources) {
        const m = await measure(scale, source, work);
        fresh.push(m);
        console.log(`${m.label} ${m.scale}x ${m.source.padEnd(6)} ${m.status.padEnd(7)} runs ${m.runsDone}/${m.runsTotal} wall ${seconds(m.wallMs).padStart(8)} cpu ${seconds(m.cpuMs).padStart(8)} rss ${mib(m.peakRssBytes).padStart(8)} rows ${m.rows} ${JSON.stringify(m.tables)}${m.note ? `  ${m.note}` : ''}`);
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const key = (m: Measurement): string => `${m.label}|${m.scale}|${m.source}|${m.filter}`;
  const replaced = new Set(fresh.map(key));
  const results = [...previous.results.filter((m) => !replaced.has(key(m))), ...fresh]
    .sort((a, b) => a.scale - b.scale || a.source.localeCompare(b.source) || a.at.localeCompare(b.at));
  const context = {
    ...previous.context,
    machine: `${machineLine()} (2 cores shared with other work: CPU time is the steadier number)`,
    duckdb: `node-api ${duckdbVersion()}`,
    workload: `tables: [{glob: '${SIGNAL_GLOB}', table: signals}] on the runs a filter selects: with \`params.imputation_method = 'SAITS'\` the signal CSVs of 15 imputation runs × 507 subjects at 1×, 150 × 507 at 10× (the classification runs the filter also matches add only their listing)`,
    digest: 'per table: row count and sum(hash(rowid, every column)) mod 1e9+7 — equal digests mean the same rows in the same insertion order',
  };
  mkdirSync(path.dirname(resultsJson), { recursive: true });
  writeFileSync(resultsJson, `${JSON.stringify({ context, results }, null, 1)}\n`);
  writeFileSync(resultsMd, render(results, context));
  console.log('wrote bench/results/artifacts-speed.md and artifacts-speed.json');
}

await main();
