// Built-in extractor `rankings`: the inputs of a critical-difference (CD) diagram (Demšar 2006).
//
// A method is a combination of the params in `method_params`, a data set (or fold) a combination of
// `dataset_params`. Runs sharing both are averaged (`aggregate`) into one cell. Only complete blocks
// count — data sets on which every method has a value (the Friedman test needs them); others are
// dropped with a warning. DuckDB ranks the cells in SQL (ties get average ranks); Node only sees k
// rows of mean ranks, so memory does not grow with the number of runs. Each method is one unit
// (its `rankings` row and its `ranking_cells`), then one `summary` unit writes `rankings_summary`.
//
// Tables (with the optional `output_prefix`):
//   rankings(method, method_config JSON, mean_rank, position, n_datasets, n_runs, mean_value, metric, direction)
//   ranking_cells(method, dataset, dataset_config JSON, value, rank, n_runs)
//   rankings_summary(metric, direction, k, n, friedman_chi2, friedman_p, iman_davenport_f, iman_davenport_p,
//                    df1, df2, q_005, q_010, cd_005, cd_010, datasets_dropped, runs_used, runs_without_labels)
import { z } from 'zod';
import { friedmanTest, nemenyiCriticalDifference, nemenyiQ } from '../derived/stats.js';
import {
  attributeSpec,
  configExpression,
  labelExpression,
  labelledRunsQuery,
  outputPrefix,
  parseAttribute,
  requireTables,
  runSelectionOptions,
} from '../derived/run-attributes.js';
import { openWarehouseSnapshot } from '../derived/warehouse-snapshot.js';
import { defineExtractor } from '../sdk/index.js';

export const rankingsOptions = z.strictObject({
  ...runSelectionOptions,
  /** Params (or `tag:`/`run:` attributes) whose values together name a method. */
  method_params: z.array(attributeSpec).min(1),
  /** Params (or `tag:`/`run:` attributes) whose values together name a data set / fold. */
  dataset_params: z.array(attributeSpec).min(1),
  /** How several runs of one method on one data set become one value. Default mean. */
  aggregate: z.enum(['mean', 'median', 'min', 'max']).default('mean'),
  output_prefix: outputPrefix,
  batch_rows: z.number().optional(),
  threads: z.number().optional(),
});
export type RankingsOptions = z.infer<typeof rankingsOptions>;

const AGGREGATES = { mean: 'avg', median: 'median', min: 'min', max: 'max' } as const;

export default defineExtractor<RankingsOptions>(
  'rankings',
  async (ctx) => {
    const options = ctx.options;
    const prefix = options.output_prefix;
    // Snapshot first: a missing warehouse fails before any staging table is declared.
    const snapshot = await openWarehouseSnapshot({ warehouse: ctx.warehouse, label: `${ctx.runId}-rankings`, onWait: (m) => ctx.log.info(m) });
    try {
      const rankings = ctx.table(`${prefix}rankings`, {
        method: 'VARCHAR',
        method_config: 'JSON',
        mean_rank: 'DOUBLE',
        position: 'BIGINT',
        n_datasets: 'BIGINT',
        n_runs: 'BIGINT',
        mean_value: 'DOUBLE',
        metric: 'VARCHAR',
        direction: 'VARCHAR',
      });
      const cellsTable = ctx.table(`${prefix}ranking_cells`, {
        method: 'VARCHAR',
        dataset: 'VARCHAR',
        dataset_config: 'JSON',
        value: 'DOUBLE',
        rank: 'DOUBLE',
        n_runs: 'BIGINT',
      });
      const summary = ctx.table(`${prefix}rankings_summary`, {
        metric: 'VARCHAR',
        direction: 'VARCHAR',
        k: 'BIGINT',
        n: 'BIGINT',
        friedman_chi2: 'DOUBLE',
        friedman_p: 'DOUBLE',
        iman_davenport_f: 'DOUBLE',
        iman_davenport_p: 'DOUBLE',
        df1: 'BIGINT',
        df2: 'BIGINT',
        q_005: 'DOUBLE',
        q_010: 'DOUBLE',
        cd_005: 'DOUBLE',
        cd_010: 'DOUBLE',
        datasets_dropped: 'BIGINT',
        runs_used: 'BIGINT',
        runs_without_labels: 'BIGINT',
      });

      await requireTables((name) => snapshot.hasTable(name), ['runs', 'params', 'latest_metrics'], 'the MLflow extraction job');
      const methodAttributes = options.method_params.map(parseAttribute);
      const datasetAttributes = options.dataset_params.map(parseAttribute);
      if (methodAttributes.some((attribute) => attribute.kind === 'tag') || datasetAttributes.some((attribute) => attribute.kind === 'tag')) {
        await requireTables((name) => snapshot.hasTable(name), ['tags'], 'the MLflow extraction job');
      }
      const attributes = [...methodAttributes, ...datasetAttributes];
      const labelled = labelledRunsQuery(options, attributes);
      const methodColumns = labelled.columns.slice(0, methodAttributes.length);
      const datasetColumns = labelled.columns.slice(methodAttributes.length);
      const order = options.direction === 'higher' ? 'DESC' : 'ASC';

      await snapshot.connection.run(`CREATE OR REPLACE TEMP TABLE labelled AS ${labelled.sql}`);
      const [counts] = await snapshot.all(
        `SELECT count(*) AS runs, count(*) FILTER (WHERE ${labelled.columns.map((c) => `${c} IS NULL`).join(' OR ')}) AS unlabelled FROM labelled`,
      );
      const runsWithoutLabels = Number(counts?.['unlabelled'] ?? 0);
      if (Number(counts?.['runs'] ?? 0) === 0) {
        throw new Error(`no active run has a finite value of metric '${options.metric}' in latest_metrics; check 'metric' and 'experiment_ids'`);
      }
      if (runsWithoutLabels > 0) {
        ctx.log.warn(`${runsWithoutLabels} runs lack one of ${attributes.map((a) => a.spec).join(', ')} and are left out`);
      }
      const labelledComplete = labelled.columns.map((c) => `${c} IS NOT NULL`).join(' AND ');
      await snapshot.connection.run(`
        CREATE OR REPLACE TEMP TABLE cells AS
        WITH aggregated AS (
          SELECT ${labelExpression(methodColumns)} AS method, ${labelExpression(datasetColumns)} AS dataset,
                 any_value(${configExpression(methodAttributes, methodColumns)}) AS method_config,
                 any_value(${configExpression(datasetAttributes, datasetColumns)}) AS dataset_config,
                 ${AGGREGATES[options.aggregate]}(value) AS value, count(*) AS n_runs
          FROM labelled
          WHERE ${labelledComplete}
          GROUP BY ALL
        ),
        complete AS (
          SELECT dataset FROM aggregated GROUP BY dataset
          HAVING count(*) = (SELECT count(DISTINCT method) FROM aggregated)
        )
        SELECT a.*,
               rank() OVER (PARTITION BY a.dataset ORDER BY a.value ${order})
                 + (count(*) OVER (PARTITION BY a.dataset, a.value) - 1) / 2.0 AS rank
        FROM aggregated a SEMI JOIN complete c ON c.dataset = a.dataset`);
      const [shape] = await snapshot.all(`
        SELECT (SELECT count(DISTINCT ${labelExpression(datasetColumns)}) FROM labelled WHERE ${labelledComplete}) AS datasets_all,
               (SELECT count(DISTINCT dataset) FROM cells) AS n,
               (SELECT count(DISTINCT method) FROM cells) AS k,
               (SELECT coalesce(sum(n_runs), 0) FROM cells) AS runs_used`);
      const k = Number(shape?.['k'] ?? 0);
      const n = Number(shape?.['n'] ?? 0);
      const dropped = Number(shape?.['datasets_all'] ?? 0) - n;
      if (dropped > 0) {
        const missing = await snapshot.all(`
          WITH present AS (SELECT DISTINCT ${labelExpression(methodColumns)} AS method, ${labelExpression(datasetColumns)} AS dataset FROM labelled WHERE ${labelledComplete}),
               methods AS (SELECT DISTINCT method FROM present),
               datasets AS (SELECT DISTINCT dataset FROM present)
          SELECT m.method, count(*) AS missing FROM methods m CROSS JOIN datasets d ANTI JOIN present p ON p.method = m.method AND p.dataset = d.dataset
          WHERE m.method IS NOT NULL AND d.dataset IS NOT NULL GROUP BY m.method ORDER BY missing DESC, m.method LIMIT 5`);
        ctx.log.warn(
          `${dropped} data sets lack a value for some method and are left out of the ranking (Friedman needs complete blocks); ` +
            `methods missing most: ${missing.map((row) => `${String(row['method'])} (${String(row['missing'])})`).join(', ')}`,
        );
      }
      if (k < 2 || n < 2) {
        throw new Error(
          `ranking needs at least 2 methods on at least 2 complete data sets; found ${k} methods on ${n} complete data sets ` +
            `(method_params: ${options.method_params.join(', ')}; dataset_params: ${options.dataset_params.join(', ')})`,
        );
      }
      if (k > 10) ctx.log.warn(`${k} methods: the Nemenyi q table (Demšar 2006, Table 5) ends at k = 10, so cd_005/cd_010 are NULL`);

      const methods = await snapshot.all(`
        SELECT method, any_value(method_config)::VARCHAR AS method_config, avg(rank) AS mean_rank, count(*) AS n_datasets,
               sum(n_runs) AS n_runs, avg(value) AS mean_value,
               row_number() OVER (ORDER BY avg(rank), method) AS position
        FROM cells GROUP BY method ORDER BY position`);
      ctx.expect({ units: methods.length + 1 });
      let done = 0;
      for (const method of methods) {
        if (ctx.stopRequested) return;
        const name = String(method['method']);
        await ctx.unit(`method:${name}`, async () => {
          rankings.append([
            name,
            String(method['method_config']),
            Number(method['mean_rank']),
            Number(method['position']),
            Number(method['n_datasets']),
            Number(method['n_runs']),
            Number(method['mean_value']),
            options.metric,
            options.direction,
          ]);
          for await (const rows of snapshot.stream(
            `SELECT dataset, dataset_config::VARCHAR AS dataset_config, value, rank, n_runs FROM cells WHERE method = $1 ORDER BY dataset`,
            [name],
          )) {
            for (const row of rows) {
              cellsTable.append([name, String(row['dataset']), String(row['dataset_config']), Number(row['value']), Number(row['rank']), Number(row['n_runs'])]);
            }
          }
        });
        ctx.progress(++done, methods.length + 1, 'methods');
      }
      await ctx.unit('summary', async () => {
        const result = friedmanTest(
          methods.map((method) => Number(method['mean_rank'])),
          n,
        );
        summary.append([
          options.metric,
          options.direction,
          k,
          n,
          result.chi2,
          result.chi2P,
          result.f,
          result.fP,
          result.dfNumerator,
          result.dfDenominator,
          nemenyiQ(k, 0.05) ?? null,
          nemenyiQ(k, 0.1) ?? null,
          nemenyiCriticalDifference(k, n, 0.05) ?? null,
          nemenyiCriticalDifference(k, n, 0.1) ?? null,
          dropped,
          Number(shape?.['runs_used'] ?? 0),
          runsWithoutLabels,
        ]);
        ctx.log.info(
          `${k} methods × ${n} data sets: Friedman χ² = ${result.chi2.toFixed(3)} (p = ${result.chi2P.toPrecision(3)}), ` +
            `Iman–Davenport F = ${result.f.toFixed(3)} (p = ${result.fP.toPrecision(3)}), CD(0.05) = ${nemenyiCriticalDifference(k, n, 0.05)?.toFixed(3) ?? 'n/a'}`,
        );
      });
      ctx.progress(++done, methods.length + 1, 'methods');
    } finally {
      snapshot.close();
    }
  },
  { optionsSchema: rankingsOptions },
);
