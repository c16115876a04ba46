// The derived extractors run as real `run-extractor` children against a small warehouse DuckDB file,
// and their staging tables are checked.
import { spawn } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { projectRoot } from '../supervisor/paths.js';
import { DEMSAR_METHODS, DEMSAR_TABLE_6 } from './helpers/demsar-table6.js';
import { createWarehouse, queryFile, runExtractorChild, tempDir, type WarehouseRun } from './helpers/derived-warehouse.js';

const round = (value: unknown, digits: number) => Math.round(Number(value) * 10 ** digits) / 10 ** digits;

function demsarRuns(): WarehouseRun[] {
  const runs: WarehouseRun[] = [];
  DEMSAR_TABLE_6.forEach(([dataset, row], datasetIndex) => {
    row.forEach((auc, methodIndex) => {
      runs.push({ run_id: `r${datasetIndex}_${methodIndex}`, params: { classifier: DEMSAR_METHODS[methodIndex]!, dataset }, metrics: { auc } });
    });
  });
  // Noise the extractor must ignore or report: a data set lacking one method (dropped, warned),
  // a deleted run with an extreme value, a run without the dataset param, a NaN metric.
  DEMSAR_METHODS.slice(0, 3).forEach((classifier, index) => runs.push({ run_id: `extra_${index}`, params: { classifier, dataset: 'partial' }, metrics: { auc: 0.5 } }));
  runs.push({ run_id: 'deleted', lifecycle_stage: 'deleted', params: { classifier: 'C4.5', dataset: 'wine' }, metrics: { auc: 0.0 } });
  runs.push({ run_id: 'unlabelled', params: { classifier: 'C4.5' }, metrics: { auc: 0.99 } });
  runs.push({ run_id: 'nan', params: { classifier: 'C4.5', dataset: 'iris' }, metrics: { auc: Number.NaN } });
  return runs;
}

test('rankings reproduces Demšar (2006) §3.2.2 from runs in the warehouse: mean ranks, χ²_F, F_F, CD', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const warehouse = path.join(dir, 'warehouse.duckdb');
  const staging = path.join(dir, 'staging', 'run.duckdb');
  await createWarehouse(warehouse, demsarRuns());
  const result = await runExtractorChild('rankings', {
    warehouse,
    staging,
    options: { metric: 'auc', direction: 'higher', method_params: ['classifier'], dataset_params: ['dataset'] },
  });
  t.is(result.code, 0, result.stderr);
  t.true(result.messages.some((m) => m.type === 'ready'));
  t.true(result.messages.some((m) => m.type === 'progress' && m.unit === 'methods'));
  t.true(result.warnings.some((w) => /1 data sets lack a value for some method.*C4\.5\+m\+cf \(1\)/.test(w)), result.warnings.join('\n'));
  t.true(result.warnings.some((w) => /1 runs lack one of classifier, dataset/.test(w)), result.warnings.join('\n'));

  const rankings = await queryFile(staging, 'SELECT method, mean_rank, position, n_datasets, n_runs FROM rankings ORDER BY method');
  const byMethod = Object.fromEntries(rankings.map((row) => [row['method'], row]));
  // §3.2.2: average ranks 3.143, 2.000, 2.893, 1.964
  t.deepEqual(DEMSAR_METHODS.map((m) => round(byMethod[m]?.['mean_rank'], 3)), [3.143, 2.0, 2.893, 1.964]);
  t.deepEqual(DEMSAR_METHODS.map((m) => Number(byMethod[m]?.['position'])), [4, 2, 3, 1]);
  t.true(rankings.every((row) => Number(row['n_datasets']) === 14 && Number(row['n_runs']) === 14));

  const [summary] = await queryFile(staging, 'SELECT * FROM rankings_summary');
  t.truthy(summary);
  t.is(Number(summary!['k']), 4);
  t.is(Number(summary!['n']), 14);
  t.is(round(summary!['friedman_chi2'], 2), 9.28);
  t.is(round(summary!['iman_davenport_f'], 2), 3.69);
  t.true(Number(summary!['iman_davenport_p']) < 0.05);
  t.is(Number(summary!['q_005']), 2.569);
  t.is(Number(summary!['q_010']), 2.291);
  t.is(round(summary!['cd_005'], 2), 1.25);
  t.is(round(summary!['cd_010'], 2), 1.12);
  t.is(Number(summary!['datasets_dropped']), 1);
  t.is(Number(summary!['runs_without_labels']), 1);

  // The per-cell ranks are Table 6's bracketed ranks (ties averaged).
  const iris = await queryFile(staging, `SELECT method, rank FROM ranking_cells WHERE dataset = 'iris' ORDER BY method`);
  t.deepEqual(Object.fromEntries(iris.map((row) => [row['method'], row['rank']])), { 'C4.5': 1, 'C4.5+cf': 4, 'C4.5+m': 2.5, 'C4.5+m+cf': 2.5 });
});

test('rankings with direction lower on an error metric gives the mirrored ranks', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const warehouse = path.join(dir, 'warehouse.duckdb');
  const staging = path.join(dir, 'staging.duckdb');
  const runs = demsarRuns().map((run) => ({ ...run, metrics: { error: 1 - (run.metrics?.['auc'] ?? 0) } }));
  await createWarehouse(warehouse, runs);
  const result = await runExtractorChild('rankings', {
    warehouse,
    staging,
    options: { metric: 'error', direction: 'lower', method_params: ['classifier'], dataset_params: ['dataset'], output_prefix: 'err_' },
  });
  t.is(result.code, 0, result.stderr);
  const rows = await queryFile(staging, 'SELECT method, mean_rank FROM err_rankings');
  const byMethod = Object.fromEntries(rows.map((row) => [row['method'], round(row['mean_rank'], 3)]));
  t.deepEqual(DEMSAR_METHODS.map((m) => byMethod[m]), [3.143, 2.0, 2.893, 1.964]);
});

test('rankings fails with a clear message when the warehouse lacks the metric', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const warehouse = path.join(dir, 'warehouse.duckdb');
  await createWarehouse(warehouse, demsarRuns());
  const result = await runExtractorChild('rankings', {
    warehouse,
    staging: path.join(dir, 'staging.duckdb'),
    options: { metric: 'f1', method_params: ['classifier'], dataset_params: ['dataset'] },
  });
  t.is(result.code, 1);
  t.regex(result.stderr, /no active run has a finite value of metric 'f1'/);
  const missing = await runExtractorChild('rankings', {
    warehouse: path.join(dir, 'nope.duckdb'),
    staging: path.join(dir, 'staging2.duckdb'),
    options: { metric: 'auc', method_params: ['classifier'], dataset_params: ['dataset'] },
  });
  t.is(missing.code, 1);
  t.regex(missing.stderr, /does not exist yet: run the raw extraction jobs first/);
});

test('top_models: top k overall and per category value, ties broken by run_id, with all params and tags as JSON', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const warehouse = path.join(dir, 'warehouse.duckdb');
  const staging = path.join(dir, 'staging.duckdb');
  const runs: WarehouseRun[] = [];
  const classifiers = ['xgboost', 'logreg', 'tabpfn'];
  for (let i = 0; i < 12; i++) {
    runs.push({
      run_id: `run${String(i).padStart(2, '0')}`,
      params: { classifier: classifiers[i % 3]!, outlier: i < 6 ? 'LOF' : 'none', seed: String(i) },
      tags: { family: i % 2 === 0 ? 'tree' : 'other' },
      metrics: { auroc: i === 11 ? 0.9 : 0.5 + i / 100 }, // run11 ties nothing; run05 and run07 below
    });
  }
  runs[7]!.metrics = { auroc: 0.55 }; // ties run05 (0.55): run05 must come first
  runs.push({ run_id: 'gone', lifecycle_stage: 'deleted', params: { classifier: 'logreg' }, metrics: { auroc: 1 } });
  await createWarehouse(warehouse, runs);
  const result = await runExtractorChild('top_models', {
    warehouse,
    staging,
    options: { metric: 'auroc', k: 3, categories: ['classifier', 'tag:family'] },
  });
  t.is(result.code, 0, result.stderr);
  const overall = await queryFile(staging, `SELECT position, run_id, value, params, tags FROM top_models WHERE scope = 'overall' ORDER BY position`);
  t.deepEqual(overall.map((row) => row['run_id']), ['run11', 'run10', 'run09']);
  t.deepEqual(JSON.parse(String(overall[0]!['params'])), { classifier: 'tabpfn', outlier: 'none', seed: '11' });
  t.deepEqual(JSON.parse(String(overall[0]!['tags'])), { family: 'other' });
  const logreg = await queryFile(staging, `SELECT run_id FROM top_models WHERE category = 'classifier' AND category_value = 'logreg' ORDER BY position`);
  t.deepEqual(logreg.map((row) => row['run_id']), ['run10', 'run07', 'run04']); // 0.60, 0.55, 0.54
  // family=other: run11 0.90, run09 0.59, then run05 and run07 tie at 0.55 — run05 wins on run_id.
  const other = await queryFile(staging, `SELECT run_id FROM top_models WHERE category = 'tag:family' AND category_value = 'other' ORDER BY position`);
  t.deepEqual(other.map((row) => row['run_id']), ['run11', 'run09', 'run05']);
  const [groups] = await queryFile(staging, `SELECT count(DISTINCT coalesce(category, '') || coalesce(category_value, '')) AS n, count(*) AS rows FROM top_models`);
  t.is(Number(groups!['n']), 1 + 3 + 2); // overall + 3 classifiers + 2 families
  t.is(Number(groups!['rows']), 6 * 3);
  t.false(JSON.stringify(await queryFile(staging, 'SELECT run_id FROM top_models')).includes('gone'));
});

test('per_subject: mean, std and rank of each subject across the runs of each group', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const warehouse = path.join(dir, 'warehouse.duckdb');
  const staging = path.join(dir, 'staging.duckdb');
  // Two outlier methods × two runs each; three subjects; error per subject.
  const runs: WarehouseRun[] = ['a1', 'a2', 'b1', 'b2'].map((run_id) => ({ run_id, params: { outlier: run_id[0] === 'a' ? 'LOF' : 'MOMENT' } }));
  runs.push({ run_id: 'deleted', lifecycle_stage: 'deleted', params: { outlier: 'LOF' } });
  const rows: [string, string, number, number][] = [
    ['a1', 's1', 1, 10], ['a1', 's2', 3, 10], ['a1', 's3', 5, 10],
    ['a2', 's1', 3, 20], ['a2', 's2', 3, 20], ['a2', 's3', 7, 20],
    ['b1', 's1', 9, 1], ['b1', 's2', 1, 1], ['b1', 's3', 1, 1],
    ['b2', 's1', 7, 3], ['b2', 's2', 1, 3], ['b2', 's3', 1, 3],
    ['deleted', 's1', 1000, 1000],
  ];
  await createWarehouse(warehouse, runs, {
    subject_errors: { columns: 'run_id VARCHAR, subject VARCHAR, mae DOUBLE, extra DOUBLE, artifact_path VARCHAR', rows: rows.map((row) => [...row, 'errors.csv']) },
  });
  const result = await runExtractorChild('per_subject', {
    warehouse,
    staging,
    options: { table: 'subject_errors', value_columns: ['mae', 'extra'], group_by: ['outlier'], rank_by: 'mean', direction: 'higher' },
  });
  t.is(result.code, 0, result.stderr);
  t.true(result.messages.filter((m) => m.type === 'progress' && m.unit === 'groups').length >= 2);
  const lof = await queryFile(staging, `SELECT subject, n_runs, mean, std, median, rank, group_config FROM per_subject WHERE group_key = 'LOF' AND value_column = 'mae' ORDER BY subject`);
  // LOF means: s1 (1+3)/2 = 2, s2 3, s3 (5+7)/2 = 6; higher ranks first.
  t.deepEqual(lof.map((row) => [row['subject'], Number(row['n_runs']), row['mean'], row['rank']]), [
    ['s1', 2, 2, 3],
    ['s2', 2, 3, 2],
    ['s3', 2, 6, 1],
  ]);
  t.true(Math.abs(Number(lof[0]!['std']) - Math.SQRT2) < 1e-12); // s1: values 1 and 3
  t.deepEqual(JSON.parse(String(lof[0]!['group_config'])), { outlier: 'LOF' });
  const moment = await queryFile(staging, `SELECT subject, mean, rank FROM per_subject WHERE group_key = 'MOMENT' AND value_column = 'mae' ORDER BY subject`);
  // s2 and s3 tie at mean 1: average rank (2 + 3) / 2.
  t.deepEqual(moment.map((row) => [row['subject'], row['mean'], row['rank']]), [['s1', 8, 1], ['s2', 1, 2.5], ['s3', 1, 2.5]]);
  const extra = await queryFile(staging, `SELECT count(*) AS n FROM per_subject WHERE value_column = 'extra'`);
  t.is(Number(extra[0]!['n']), 6);
});

test('a derived extractor waits while another process holds the warehouse, then snapshots it', async (t) => {
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const warehouse = path.join(dir, 'warehouse.duckdb');
  const staging = path.join(dir, 'staging', 'rankings.duckdb');
  await createWarehouse(warehouse, demsarRuns());
  // The holder lets go once the extractor said it is waiting (or after 30 s), so a slow start cannot miss the lock.
  const holder = spawn(process.execPath, [path.join(projectRoot, 'test/fixtures/derived/hold-warehouse.mjs'), warehouse, '30000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => holder.kill('SIGKILL'));
  let holderOut = '';
  await new Promise<void>((resolve, reject) => {
    holder.stdout.on('data', (chunk: Buffer) => {
      holderOut += chunk.toString();
      if (holderOut.includes('locked')) resolve();
    });
    holder.on('exit', () => reject(new Error(`holder exited early: ${holderOut}`)));
  });
  const result = await runExtractorChild('rankings', {
    warehouse,
    staging,
    options: { metric: 'auc', method_params: ['classifier'], dataset_params: ['dataset'] },
  }, undefined, (message) => {
    if (message.type === 'log' && /warehouse .* is locked .*waiting/.test(message.msg)) holder.stdin.end('release\n');
  });
  t.is(result.code, 0, result.stderr);
  t.true(
    result.messages.some((m) => m.type === 'log' && /warehouse .* is locked .*waiting/.test(m.msg)),
    'the run log says it waited for the warehouse',
  );
  if (holder.exitCode === null) await new Promise((resolve) => holder.once('exit', resolve));
  t.true(holderOut.includes('released'));
  const rows = await queryFile(staging, 'SELECT count(*) AS n FROM rankings');
  t.is(Number(rows[0]!['n']), 4);
  // The private copy is gone after the run.
  t.deepEqual(readdirSync(path.dirname(staging)).filter((name) => name.includes('warehouse-snapshot')), []);
});
