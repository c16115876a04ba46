// Options and SQL shared by the derived extractors: which runs, which metric, and how a run's params,
// tags or columns name its method / dataset / category. Everything here produces SQL over the
// warehouse tables `runs`, `params`, `tags` and `latest_metrics`, so DuckDB does the grouping.
import { z } from 'zod';

/**
 * A run attribute: `name` or `param:name` is a param, `tag:name` a tag, `run:column` a column of the
 * `runs` table (e.g. `run:experiment_id`).
 */
export const attributeSpec = z
  .string()
  .min(1)
  .regex(/^((param|tag):.+|run:[A-Za-z_][A-Za-z0-9_]*|[^:].*)$/, "use 'name', 'param:name', 'tag:name' or 'run:column'");

/** Output table prefix: lets two jobs of the same extractor publish side by side (e.g. 'auroc_'). */
export const outputPrefix = z
  .string()
  .regex(/^([A-Za-z_][A-Za-z0-9_]*)?$/, 'a prefix of letters, digits and _ (not starting with a digit)')
  .default('');

export const direction = z.enum(['higher', 'lower']);

/** Options common to every metric-based derived extractor. */
export const runSelectionOptions = {
  /** latest_metrics key to use. */
  metric: z.string().min(1),
  /** Whether higher or lower metric values are better. */
  direction: direction.default('higher'),
  /** Restrict to these experiments (ids as text); default: all. */
  experiment_ids: z.array(z.string().min(1)).optional(),
  /** Include runs whose lifecycle_stage is 'deleted'. Default false. */
  include_deleted: z.boolean().default(false),
};

export interface AttributeRef {
  spec: string;
  kind: 'param' | 'tag' | 'run';
  key: string;
}

// Why: one parser for the `param:`/`tag:`/`run:` convention, so every extractor reads specs the same way.
export function parseAttribute(spec: string): AttributeRef {
  if (spec.startsWith('param:')) return { spec, kind: 'param', key: spec.slice(6) };
  if (spec.startsWith('tag:')) return { spec, kind: 'tag', key: spec.slice(4) };
  if (spec.startsWith('run:')) return { spec, kind: 'run', key: spec.slice(4) };
  return { spec, kind: 'param', key: spec };
}

/** SQL string literal. */
export const sqlString = (text: string): string => `'${text.replaceAll("'", "''")}'`;
/** SQL identifier. */
export const sqlIdentifier = (name: string): string => `"${name.replaceAll('"', '""')}"`;

export interface LabelledRunsQuery {
  /** A SELECT yielding run_id, run_name, experiment_id, value, a0..an (attribute values, VARCHAR). */
  sql: string;
  /** Column names a0..an, in the order of `attributes`. */
  columns: string[];
}

export interface RunSelection {
  metric: string;
  experiment_ids?: string[] | undefined;
  include_deleted: boolean;
}

/**
 * Runs with a finite value of `metric` (the latest, by step, from `latest_metrics`) and the values of
 * the given attributes as columns a0..an (NULL when a run lacks one). Why: the common input of
 * rankings and top_models.
 */
export function labelledRunsQuery(selection: RunSelection, attributes: readonly AttributeRef[]): LabelledRunsQuery {
  const columns = attributes.map((_, index) => `a${index}`);
  const joins: string[] = [];
  const selects: string[] = [];
  attributes.forEach((attribute, index) => {
    const alias = `j${index}`;
    if (attribute.kind === 'run') {
      selects.push(`CAST(r.${sqlIdentifier(attribute.key)} AS VARCHAR) AS a${index}`);
      return;
    }
    const table = attribute.kind === 'param' ? 'params' : 'tags';
    joins.push(`LEFT JOIN (SELECT run_id, any_value(value) AS value FROM ${table} WHERE key = ${sqlString(attribute.key)} GROUP BY run_id) ${alias} ON ${alias}.run_id = r.run_id`);
    selects.push(`CAST(${alias}.value AS VARCHAR) AS a${index}`);
  });
  const filters = ['isfinite(m.value)'];
  if (!selection.include_deleted) filters.push(`coalesce(r.lifecycle_stage, 'active') <> 'deleted'`);
  if (selection.experiment_ids && selection.experiment_ids.length > 0) {
    filters.push(`CAST(r.experiment_id AS VARCHAR) IN (${selection.experiment_ids.map(sqlString).join(', ')})`);
  }
  const sql = `
    SELECT r.run_id, r.run_name, CAST(r.experiment_id AS VARCHAR) AS experiment_id, m.value${selects.map((s) => `, ${s}`).join('')}
    FROM runs r
    JOIN (SELECT run_id, max_by(CAST(value AS DOUBLE), step) AS value FROM latest_metrics WHERE key = ${sqlString(selection.metric)} GROUP BY run_id) m
      ON m.run_id = r.run_id
    ${joins.join('\n    ')}
    WHERE ${filters.join(' AND ')}`;
  return { sql, columns };
}

/** A readable label from attribute columns: the values joined by ' | ' (one attribute: its value). */
export function labelExpression(columns: readonly string[]): string {
  return columns.length === 1 ? `${columns[0]}` : `concat_ws(' | ', ${columns.join(', ')})`;
}

/** A JSON object {spec: value, …} from attribute columns, for the *_config columns. */
export function configExpression(attributes: readonly AttributeRef[], columns: readonly string[]): string {
  if (attributes.length === 0) return `'{}'::JSON`;
  return `json_object(${attributes.map((attribute, index) => `${sqlString(attribute.spec)}, ${columns[index]}`).join(', ')})`;
}

/** Tables a derived extractor needs; a missing one is an error naming the job that should produce it. */
export async function requireTables(has: (name: string) => Promise<boolean>, names: readonly string[], producer: string): Promise<void> {
  const missing: string[] = [];
  for (const name of names) if (!(await has(name))) missing.push(name);
  if (missing.length > 0) {
    throw new Error(`the warehouse has no table ${missing.join(', ')}: run ${producer} first (and list that job in this job's 'after:')`);
  }
}
