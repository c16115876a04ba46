// Built-in extractor `per_subject`: aggregates a per-subject artifact table (one row per run × subject,
// e.g. a reconstruction error per subject, published by the artifact extractor) by subject across runs —
// the generic form of the seed's extract_outlier_difficulty.py. Per group (runs sharing the values of
// `group_by`) and per value column: n, mean, std, min, max, median per subject, and the subject's rank
// by `rank_by` (1 = highest when direction is 'higher'; ties get average ranks). DuckDB aggregates;
// Node streams the result. One unit per group.
//
// group_by entries: `name`/`param:name` (a run param), `tag:name`, `run:column` (a runs column) or
// `column:name` (a column of the artifact table itself).
//
// Table (with the optional `output_prefix`):
//   per_subject(group_key, group_config JSON, value_column, subject, n_runs, n_values, mean, std, min,
//               max, median, rank)
import { z } from 'zod';
import {
  attributeSpec,
  configExpression,
  direction,
  labelExpression,
  outputPrefix,
  parseAttribute,
  requireTables,
  sqlIdentifier,
  sqlString,
  type AttributeRef,
} from '../derived/run-attributes.js';
import { openWarehouseSnapshot } from '../derived/warehouse-snapshot.js';
import { defineExtractor } from '../sdk/index.js';

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain column or table name');

export const perSubjectOptions = z.strictObject({
  /** The warehouse table with run_id, the subject column and the value columns. */
  table: identifier,
  subject_column: identifier.default('subject'),
  value_columns: z.array(identifier).min(1),
  group_by: z.array(z.union([attributeSpec, z.string().regex(/^column:[A-Za-z_][A-Za-z0-9_]*$/)])).default([]),
  rank_by: z.enum(['mean', 'median', 'min', 'max']).default('mean'),
  direction: direction.default('higher'),
  experiment_ids: z.array(z.string().min(1)).optional(),
  include_deleted: z.boolean().default(false),
  output_prefix: outputPrefix,
  batch_rows: z.number().optional(),
  threads: z.number().optional(),
});
export type PerSubjectOptions = z.infer<typeof perSubjectOptions>;

type GroupAttribute = AttributeRef | { spec: string; kind: 'column'; key: string };

export default defineExtractor<PerSubjectOptions>(
  'per_subject',
  async (ctx) => {
    const options = ctx.options;
    const snapshot = await openWarehouseSnapshot({ warehouse: ctx.warehouse, label: `${ctx.runId}-per-subject`, onWait: (m) => ctx.log.info(m) });
    try {
      const output = ctx.table(`${options.output_prefix}per_subject`, {
        group_key: 'VARCHAR',
        group_config: 'JSON',
        value_column: 'VARCHAR',
        subject: 'VARCHAR',
        n_runs: 'BIGINT',
        n_values: 'BIGINT',
        mean: 'DOUBLE',
        std: 'DOUBLE',
        min: 'DOUBLE',
        max: 'DOUBLE',
        median: 'DOUBLE',
        rank: 'DOUBLE',
      });
      await requireTables((name) => snapshot.hasTable(name), ['runs', options.table], `the job that publishes '${options.table}'`);
      const columns = await snapshot.columns(options.table);
      for (const needed of ['run_id', options.subject_column, ...options.value_columns]) {
        if (!columns.includes(needed)) throw new Error(`warehouse table '${options.table}' has no column '${needed}' (columns: ${columns.join(', ')})`);
      }
      const attributes: GroupAttribute[] = options.group_by.map((spec) =>
        spec.startsWith('column:') ? { spec, kind: 'column' as const, key: spec.slice(7) } : parseAttribute(spec),
      );
      const joins: string[] = [];
      const groupColumns: string[] = [];
      attributes.forEach((attribute, index) => {
        const alias = `j${index}`;
        groupColumns.push(`g${index}`);
        if (attribute.kind === 'column') {
          if (!columns.includes(attribute.key)) throw new Error(`group_by ${attribute.spec}: table '${options.table}' has no column '${attribute.key}'`);
          return;
        }
        if (attribute.kind === 'run') return;
        const source = attribute.kind === 'param' ? 'params' : 'tags';
        joins.push(`LEFT JOIN (SELECT run_id, any_value(value) AS value FROM ${source} WHERE key = ${sqlString(attribute.key)} GROUP BY run_id) ${alias} ON ${alias}.run_id = t.run_id`);
      });
      if (attributes.some((a) => a.kind === 'param')) await requireTables((name) => snapshot.hasTable(name), ['params'], 'the MLflow extraction job');
      if (attributes.some((a) => a.kind === 'tag')) await requireTables((name) => snapshot.hasTable(name), ['tags'], 'the MLflow extraction job');
      const groupSelects = attributes.map((attribute, index) => {
        if (attribute.kind === 'column') return `CAST(t.${sqlIdentifier(attribute.key)} AS VARCHAR) AS g${index}`;
        if (attribute.kind === 'run') return `CAST(r.${sqlIdentifier(attribute.key)} AS VARCHAR) AS g${index}`;
        return `CAST(j${index}.value AS VARCHAR) AS g${index}`;
      });
      const filters: string[] = [];
      if (!options.include_deleted) filters.push(`coalesce(r.lifecycle_stage, 'active') <> 'deleted'`);
      if (options.experiment_ids?.length) filters.push(`CAST(r.experiment_id AS VARCHAR) IN (${options.experiment_ids.map(sqlString).join(', ')})`);
      const groupKey = groupColumns.length === 0 ? `'all'` : labelExpression(groupColumns);
      const groupConfig = configExpression(attributes as AttributeRef[], groupColumns);
      // A view, not a copy: each group's query scans the snapshot with its own filter.
      await snapshot.connection.run(`
        CREATE OR REPLACE TEMP VIEW subject_values AS
        SELECT t.run_id, CAST(t.${sqlIdentifier(options.subject_column)} AS VARCHAR) AS subject,
               ${options.value_columns.map((c) => `CAST(t.${sqlIdentifier(c)} AS DOUBLE) AS ${sqlIdentifier(c)}`).join(', ')}
               ${groupSelects.map((s) => `, ${s}`).join('')}
        FROM ${sqlIdentifier(options.table)} t JOIN runs r ON r.run_id = t.run_id
        ${joins.join('\n        ')}
        ${filters.length ? `WHERE ${filters.join(' AND ')}` : ''}`);
      const groupsWhere = groupColumns.length === 0 ? '' : `WHERE ${groupColumns.map((c) => `${c} IS NOT NULL`).join(' AND ')}`;
      const groups: { key: string; config: string }[] = [];
      // duckvisor: allow no-progress-in-loop -- reads only the distinct group keys; progress is reported per group below
      for await (const rows of snapshot.stream(
        `SELECT DISTINCT ${groupKey} AS group_key, ${groupConfig}::VARCHAR AS group_config FROM subject_values ${groupsWhere} ORDER BY 1`,
      )) {
        // duckvisor: allow unbounded-accumulation -- one entry per distinct group (the list of units), never per data row
        for (const row of rows) groups.push({ key: String(row['group_key']), config: String(row['group_config']) });
      }
      if (groups.length === 0) throw new Error(`table '${options.table}' has no rows of a selected run${groupColumns.length ? ' with every group_by value' : ''}`);
      ctx.expect({ units: groups.length });
      const order = options.direction === 'higher' ? 'DESC' : 'ASC';
      const unpivot = options.value_columns.map(sqlIdentifier).join(', ');
      let done = 0;
      for (const group of groups) {
        if (ctx.stopRequested) return;
        await ctx.unit(`group:${group.key}`, async () => {
          const sql = `
            WITH long AS (
              UNPIVOT (SELECT run_id, subject, ${unpivot} FROM subject_values ${groupsWhere ? `${groupsWhere} AND` : 'WHERE'} ${groupKey} = $1)
              ON ${unpivot} INTO NAME value_column VALUE value),
            stats AS (
              SELECT value_column, subject, count(DISTINCT run_id) AS n_runs, count(value) AS n_values,
                     avg(value) AS mean, stddev_samp(value) AS std, min(value) AS min, max(value) AS max, median(value) AS median
              FROM long WHERE isfinite(value) GROUP BY value_column, subject)
            SELECT *, rank() OVER (PARTITION BY value_column ORDER BY ${options.rank_by} ${order})
                        + (count(*) OVER (PARTITION BY value_column, ${options.rank_by}) - 1) / 2.0 AS rank
            FROM stats ORDER BY value_column, rank, subject`;
          for await (const rows of snapshot.stream(sql, [group.key])) {
            for (const row of rows) {
              const number = (name: string) => (row[name] === null ? null : Number(row[name]));
              output.append([
                group.key,
                group.config,
                String(row['value_column']),
                String(row['subject']),
                Number(row['n_runs']),
                Number(row['n_values']),
                number('mean'),
                number('std'),
                number('min'),
                number('max'),
                number('median'),
                number('rank'),
              ]);
            }
          }
        });
        ctx.progress(++done, groups.length, 'groups');
      }
    } finally {
      snapshot.close();
    }
  },
  { optionsSchema: perSubjectOptions },
);
