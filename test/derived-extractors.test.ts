// The derived extractors run as real `run-extractor` children against a small warehouse DuckDB file,
// and their staging tables are checked.
import { rmSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
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
