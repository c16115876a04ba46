// Built-in extractor `top_models`: the top-k runs by a metric, overall and per category value (the
// seed's "top models" and "top 10 by category"), each with its full configuration: all params and
// all tags of the run as JSON objects. DuckDB ranks in SQL (row_number, ties broken by run_id);
// Node sees at most k rows per unit. Units: 'overall', then one per (category, value).
//
// Table (with the optional `output_prefix`):
//   top_models(scope, category, category_value, position, run_id, run_name, experiment_id, metric,
//              value, params JSON, tags JSON)
//   scope is 'overall' (category and category_value NULL) or 'category'.
import { z } from 'zod';
import {
  attributeSpec,
  labelledRunsQuery,
  outputPrefix,
  parseAttribute,
  requireTables,
  runSelectionOptions,
} from '../derived/run-attributes.js';
import { openWarehouseSnapshot } from '../derived/warehouse-snapshot.js';
import { defineExtractor } from '../sdk/index.js';

export const topModelsOptions = z.strictObject({
  ...runSelectionOptions,
  /** How many runs per scope. Default 10. */
  k: z.number().int().min(1).max(100_000).default(10),
  /** Categories (params, or `tag:`/`run:` attributes); the top k is also listed per value of each. */
  categories: z.array(attributeSpec).default([]),
  output_prefix: outputPrefix,
  batch_rows: z.number().optional(),
  threads: z.number().optional(),
});
export type TopModelsOptions = z.infer<typeof topModelsOptions>;

export default defineExtractor<TopModelsOptions>(
  'top_models',
  async (ctx) => {
    const options = ctx.options;
    const snapshot = await openWarehouseSnapshot({ warehouse: ctx.warehouse, label: `${ctx.runId}-top-models`, onWait: (m) => ctx.log.info(m) });
    try {
      const table = ctx.table(`${options.output_prefix}top_models`, {
        scope: 'VARCHAR',
        category: 'VARCHAR',
        category_value: 'VARCHAR',
        position: 'BIGINT',
        run_id: 'VARCHAR',
        run_name: 'VARCHAR',
        experiment_id: 'VARCHAR',
        metric: 'VARCHAR',
        value: 'DOUBLE',
        params: 'JSON',
        tags: 'JSON',
      });
      await requireTables((name) => snapshot.hasTable(name), ['runs', 'params', 'tags', 'latest_metrics'], 'the MLflow extraction job');
      const categories = options.categories.map(parseAttribute);
      const labelled = labelledRunsQuery(options, categories);
      await snapshot.connection.run(`CREATE OR REPLACE TEMP TABLE labelled AS ${labelled.sql}`);
      const [count] = await snapshot.all('SELECT count(*) AS runs FROM labelled');
      if (Number(count?.['runs'] ?? 0) === 0) {
        throw new Error(`no active run has a finite value of metric '${options.metric}' in latest_metrics; check 'metric' and 'experiment_ids'`);
      }
      // Every (category, value) pair is a unit; the list is small (distinct values of a few params).
      const groups: { category: string; column: string; value: string }[] = [];
      for (const [index, category] of categories.entries()) {
        const column = labelled.columns[index]!;
        // duckvisor: allow no-progress-in-loop -- reads only the distinct category values; progress is reported per group below
        for await (const rows of snapshot.stream(`SELECT DISTINCT ${column} AS value FROM labelled WHERE ${column} IS NOT NULL ORDER BY 1`)) {
          // duckvisor: allow unbounded-accumulation -- one entry per distinct category value (the list of units), never per data row
          for (const row of rows) groups.push({ category: category.spec, column, value: String(row['value']) });
        }
      }
      const order = options.direction === 'higher' ? 'DESC' : 'ASC';
      const total = 1 + groups.length;
      ctx.expect({ units: total });
      const writeTop = async (scope: 'overall' | 'category', where: string, params: string[], category: string | null, value: string | null) => {
        // Top k first (k rows), then their params/tags: the JSON subqueries touch only those k runs.
        const sql = `
          WITH top AS (
            SELECT run_id, run_name, experiment_id, value, row_number() OVER (ORDER BY value ${order}, run_id) AS position
            FROM labelled ${where} QUALIFY position <= ${options.k})
          SELECT top.*,
            coalesce((SELECT json_group_object(key, value) FROM params p WHERE p.run_id = top.run_id), '{}')::VARCHAR AS params,
            coalesce((SELECT json_group_object(key, value) FROM tags g WHERE g.run_id = top.run_id), '{}')::VARCHAR AS tags
          FROM top ORDER BY position`;
        for await (const rows of snapshot.stream(sql, params)) {
          for (const row of rows) {
            table.append([
              scope,
              category,
              value,
              Number(row['position']),
              String(row['run_id']),
              row['run_name'] === null ? null : String(row['run_name']),
              row['experiment_id'] === null ? null : String(row['experiment_id']),
              options.metric,
              Number(row['value']),
              String(row['params']),
              String(row['tags']),
            ]);
          }
        }
      };
      let done = 0;
      await ctx.unit('overall', () => writeTop('overall', '', [], null, null));
      ctx.progress(++done, total, 'groups');
      for (const group of groups) {
        if (ctx.stopRequested) return;
        await ctx.unit(`${group.category}=${group.value}`, () =>
          writeTop('category', `WHERE ${group.column} = $1`, [group.value], group.category, group.value),
        );
        ctx.progress(++done, total, 'groups');
      }
      ctx.log.info(`top ${options.k} by ${options.metric} (${options.direction} is better): overall and ${groups.length} category values`);
    } finally {
      snapshot.close();
    }
  },
  { optionsSchema: topModelsOptions },
);
