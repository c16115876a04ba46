// The three built-in MLflow extractors run as real child processes (node dist/extractors/run-extractor.js)
// on both fixture forms; their staging DuckDB tables must hold what MLflow reported.
import path from 'node:path';
import test from 'ava';
import { DuckDBInstance } from '@duckdb/node-api';
import { execa } from 'execa';
import { childEnv } from '../extractors/sdk/protocol.js';
import { compiledPath } from '../supervisor/paths.js';
import { copyFixture, expectedFor, sourceFor, type FixtureForm } from './helpers/mlflow-fixtures.js';
import { tempDir } from './helpers/job.js';
import { writeFileSync } from 'node:fs';

const runner = compiledPath('extractors/run-extractor.js');
const TABLES = [
  { glob: '**/*.csv', table: 'csv_rows' },
  { glob: '**/*.parquet', table: 'parquet_rows' },
  { glob: '**/*.npy', table: 'npy_rows' },
  { glob: '**/*.jsonl', table: 'jsonl_rows' },
];

async function runExtractor(name: string, options: Record<string, unknown>, staging: string): Promise<{ exitCode: number; output: string }> {
  const result = await execa('node', [runner, name], {
    env: { [childEnv.staging]: staging, [childEnv.options]: JSON.stringify(options), [childEnv.heartbeatTimeout]: '30000' },
    reject: false,
    all: true,
  });
  return { exitCode: result.exitCode ?? -1, output: result.all ?? '' };
}

async function query(file: string, sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.create(file, { access_mode: 'READ_ONLY' });
  const connection = await instance.connect();
  try {
    return (await connection.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

for (const form of ['filestore', 'sqlite'] as FixtureForm[]) {
  test(`${form}: mlflow-runs, mlflow-metric-history and mlflow-artifacts fill staging with MLflow's counts`, async (t) => {
    const expected = expectedFor(form);
    const { dir, cleanup } = tempDir();
    t.teardown(cleanup);
    const source = sourceFor(form);
    const options = { source, include_deleted: true };

    const runs = await runExtractor('mlflow-runs', options, path.join(dir, 'runs.duckdb'));
    t.is(runs.exitCode, 0, runs.output);
    const [counts] = await query(
      path.join(dir, 'runs.duckdb'),
      `SELECT (SELECT count(*) FROM experiments) e, (SELECT count(*) FROM runs) r, (SELECT count(*) FROM params) p, (SELECT count(*) FROM tags) tg,
              (SELECT count(*) FROM latest_metrics) m, (SELECT count(*) FROM runs WHERE lifecycle_stage = 'deleted') d,
              (SELECT value FROM latest_metrics WHERE key = 'weird/pos_inf') inf, (SELECT isnan(value) FROM latest_metrics WHERE key = 'weird/nan') nan,
              (SELECT max(experiment_id) FROM experiments) long_id`,
    );
    t.deepEqual(counts, {
      e: BigInt(expected.experiments.all), r: BigInt(expected.totals.all.runs), p: BigInt(expected.totals.all.params), tg: BigInt(expected.totals.all.tags),
      m: BigInt(expected.totals.all.latest_metrics), d: 3n, inf: Infinity, nan: true, long_id: '940304421003085572',
    });
    const [view] = await query(path.join(dir, 'runs.duckdb'), 'SELECT sql FROM _duckvisor_views WHERE name = \'run_summary\'');
    const summary = await query(path.join(dir, 'runs.duckdb'), `SELECT count(*) n, count("params.classifier") c, count("metrics.AUROC") a FROM (${String(view!['sql'])})`);
    // classifier: 16 classification runs + the deleted one; AUROC also logged by the 2 deleted-experiment runs.
    t.deepEqual(summary[0], { n: BigInt(expected.totals.all.runs), c: 17n, a: 19n });

    const history = await runExtractor('mlflow-metric-history', options, path.join(dir, 'history.duckdb'));
    t.is(history.exitCode, 0, history.output);
    const [points] = await query(path.join(dir, 'history.duckdb'), 'SELECT count(*) n, count(DISTINCT run_id) runs FROM metric_history');
    t.deepEqual(points, { n: BigInt(expected.totals.all.metric_points), runs: BigInt(expected.totals.all.runs) });

    const artifacts = await runExtractor('mlflow-artifacts', { ...options, tables: TABLES }, path.join(dir, 'artifacts.duckdb'));
    t.is(artifacts.exitCode, 0, artifacts.output);
    const [files] = await query(
      path.join(dir, 'artifacts.duckdb'),
      `SELECT (SELECT count(*) FROM artifacts) files, (SELECT sum(size) FROM artifacts) bytes, (SELECT count(*) FROM csv_rows) AS "csv", (SELECT count(*) FROM parquet_rows) AS "parquet",
              (SELECT count(*) FROM npy_rows) AS "npy", (SELECT count(*) FROM jsonl_rows) AS "jsonl"`,
    );
    const rows = expected.totals.all.artifact_rows;
    t.deepEqual(files, {
      files: BigInt(expected.totals.all.artifacts), bytes: BigInt(expected.totals.all.artifact_bytes),
      csv: BigInt(rows['csv']!), parquet: BigInt(rows['parquet']!), npy: BigInt(rows['npy']!), jsonl: BigInt(rows['jsonl']!),
    });
  });
}

test('a bad run is skipped and listed (on_bad_run: skip) or fails the extraction (on_bad_run: fail)', async (t) => {
  const copy = copyFixture('filestore');
  t.teardown(copy.cleanup);
  const runId = expectedFor('filestore').spot.run_id;
  const metricFile = path.join(copy.dir, 'mlruns', '253031330985650090', runId, 'metrics', 'AUROC');
  writeFileSync(metricFile, '1735689661000 zero 0\n');
  const staging = path.join(copy.dir, 'skip.duckdb');
  const skipped = await runExtractor('mlflow-metric-history', { source: sourceFor('filestore', copy.dir) }, staging);
  t.is(skipped.exitCode, 0, skipped.output);
  t.regex(skipped.output, new RegExp(`skipped unit ${runId}: run ${runId}: ${metricFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: line 1: value "zero" is not a number`));
  const [row] = await query(staging, `SELECT count(DISTINCT run_id) runs, count(*) FILTER (WHERE run_id = '${runId}') bad FROM metric_history`);
  t.deepEqual(row, { runs: BigInt(expectedFor('filestore').totals.active.runs - 1), bad: 0n });

  const failed = await runExtractor('mlflow-metric-history', { source: sourceFor('filestore', copy.dir), on_bad_run: 'fail' }, path.join(copy.dir, 'fail.duckdb'));
  t.is(failed.exitCode, 1);
  t.regex(failed.output, /value "zero" is not a number \(on_bad_run: fail\)/);
});

test('options are checked: an unknown experiment and an 18-digit id given as a YAML number', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const unknown = await runExtractor('mlflow-runs', { source: sourceFor('filestore'), experiments: ['nope'] }, path.join(dir, 'a.duckdb'));
  t.is(unknown.exitCode, 1);
  t.regex(unknown.output, /no active experiment with id or name "nope".*found: 0 \(Default\), 253031330985650090 \(classification\)/s);
  const byName = await runExtractor('mlflow-runs', { source: sourceFor('sqlite'), experiments: ['imputation'] }, path.join(dir, 'b.duckdb'));
  t.is(byName.exitCode, 0, byName.output);
  const [row] = await query(path.join(dir, 'b.duckdb'), 'SELECT count(*) n FROM runs');
  t.deepEqual(row, { n: 4n });
  const lossy = await runExtractor('mlflow-runs', { source: sourceFor('filestore'), experiments: [253031330985650090] }, path.join(dir, 'c.duckdb'));
  t.is(lossy.exitCode, 1);
  t.regex(lossy.output, /quote them/);
});

test('mlflow-runs resumed: runs committed by an earlier attempt still give run_summary their params and metrics columns', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const source = sourceFor('sqlite');
  const columnsOf = async (file: string): Promise<string[]> => {
    const [view] = await query(file, "SELECT sql FROM _duckvisor_views WHERE name = 'run_summary'");
    return (await query(file, `DESCRIBE ${String(view!['sql'])}`)).map((row) => String(row['column_name'])).sort();
  };
  const fresh = await runExtractor('mlflow-runs', { source }, path.join(dir, 'fresh.duckdb'));
  t.is(fresh.exitCode, 0, fresh.output);
  const all = await columnsOf(path.join(dir, 'fresh.duckdb'));

  // The first attempt commits the imputation runs only; the second finds them committed and extracts the rest.
  const staging = path.join(dir, 'resumed.duckdb');
  const first = await runExtractor('mlflow-runs', { source, experiments: ['imputation'] }, staging);
  t.is(first.exitCode, 0, first.output);
  const imputationOnly = (await columnsOf(staging)).filter((column) => column.includes('.'));
  const second = await runExtractor('mlflow-runs', { source }, staging);
  t.is(second.exitCode, 0, second.output);
  t.regex(second.output, /resuming: 5 units were committed by earlier attempts/);
  const resumed = await columnsOf(staging);
  t.deepEqual(resumed, all, 'the same columns as one attempt over all runs');
  t.true(imputationOnly.length > 0 && imputationOnly.every((column) => resumed.includes(column)), `the imputation runs' columns are kept: ${imputationOnly.join(', ')}`);
});
