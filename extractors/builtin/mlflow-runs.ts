// Built-in extractor `mlflow-runs`: experiments, runs, params, tags, latest metrics and dataset inputs
// of an MLflow store, one unit per run (plus one for the experiments), and a view `run_summary` with
// one row per run and every param ("params.<key>") and latest metric ("metrics.<key>") as a column,
// like mlflow.search_runs() returns them.
//
// Tables: experiments(experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)
//         experiment_tags(experiment_id, key, value)
//         runs(run_id, experiment_id, run_name, user_id, status, start_time, end_time, deleted_time, lifecycle_stage, artifact_uri, source_kind)
//         params(run_id, key, value)   tags(run_id, key, value)
//         latest_metrics(run_id, key, value, step, timestamp)
//         run_inputs(run_id, dataset_name, dataset_digest, source_type, source, context)
import { z } from 'zod';
import { forEachListedRun, mlflowSourceOptions, prepareRunSelection, type PreparedRunSelection } from '../mlflow/selection.js';
import { defineExtractor } from '../sdk/index.js';

export const mlflowRunsOptions = z.strictObject({ ...mlflowSourceOptions });
export type MlflowRunsOptions = z.infer<typeof mlflowRunsOptions>;

function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function sqlIdentifier(text: string): string {
  return `"${text.replace(/"/g, '""')}"`;
}

/** The run_summary view: runs + one column per param key and per latest-metric key. */
export function runSummarySql(paramKeys: readonly string[], metricKeys: readonly string[]): string {
  const pivot = (table: string, prefix: string, keys: readonly string[]): string =>
    `(SELECT run_id, ${keys.map((key) => `any_value(value) FILTER (WHERE key = ${sqlString(key)}) AS ${sqlIdentifier(`${prefix}.${key}`)}`).join(', ')} FROM ${table} GROUP BY run_id)`;
  const params = [...paramKeys].sort();
  const metrics = [...metricKeys].sort();
  const columns = [...params.map((k) => `p.${sqlIdentifier(`params.${k}`)}`), ...metrics.map((k) => `m.${sqlIdentifier(`metrics.${k}`)}`)];
  return [
    `SELECT r.*${columns.map((c) => `, ${c}`).join('')} FROM runs r`,
    params.length > 0 ? `LEFT JOIN ${pivot('params', 'params', params)} p ON p.run_id = r.run_id` : '',
    metrics.length > 0 ? `LEFT JOIN ${pivot('latest_metrics', 'metrics', metrics)} m ON m.run_id = r.run_id` : '',
  ]
    .filter((line) => line !== '')
    .join(' ');
}

export default defineExtractor<MlflowRunsOptions, Promise<PreparedRunSelection>>(
  'mlflow-runs',
  async (ctx, prepared) => {
    const experimentsTable = ctx.table('experiments', {
      experiment_id: 'VARCHAR', name: 'VARCHAR', artifact_location: 'VARCHAR', lifecycle_stage: 'VARCHAR', creation_time: 'TIMESTAMP', last_update_time: 'TIMESTAMP',
    });
    const experimentTags = ctx.table('experiment_tags', { experiment_id: 'VARCHAR', key: 'VARCHAR', value: 'VARCHAR' });
    const runsTable = ctx.table('runs', {
      run_id: 'VARCHAR', experiment_id: 'VARCHAR', run_name: 'VARCHAR', user_id: 'VARCHAR', status: 'VARCHAR', start_time: 'TIMESTAMP', end_time: 'TIMESTAMP',
      deleted_time: 'TIMESTAMP', lifecycle_stage: 'VARCHAR', artifact_uri: 'VARCHAR', source_kind: 'VARCHAR',
    });
    const params = ctx.table('params', { run_id: 'VARCHAR', key: 'VARCHAR', value: 'VARCHAR' });
    const tags = ctx.table('tags', { run_id: 'VARCHAR', key: 'VARCHAR', value: 'VARCHAR' });
    const latest = ctx.table('latest_metrics', { run_id: 'VARCHAR', key: 'VARCHAR', value: 'DOUBLE', step: 'BIGINT', timestamp: 'TIMESTAMP' });
    const inputs = ctx.table('run_inputs', { run_id: 'VARCHAR', dataset_name: 'VARCHAR', dataset_digest: 'VARCHAR', source_type: 'VARCHAR', source: 'VARCHAR', context: 'VARCHAR' });

    // The source was opened and its listing started by the prepare step, while the staging database was
    // being opened; runs are extracted while the rest are still being listed (the listing is most of a
    // tracking server's wait).
    const selection = await prepared;
    const { reader, experiments, listings } = selection;
    const paramKeys = new Set<string>();
    const metricKeys = new Set<string>();
    try {
      await ctx.unit('experiments', async () => {
        for (const e of experiments) {
          experimentsTable.append([e.experimentId, e.name, e.artifactLocation, e.lifecycleStage, e.creationTime, e.lastUpdateTime]);
          for (const tag of e.tags) experimentTags.append([e.experimentId, tag.key, tag.value]);
        }
      });
      const runs = await forEachListedRun(
        ctx,
        listings,
        async (run) => {
          const data = await selection.runData(run);
          runsTable.append([run.runId, run.experimentId, run.runName, run.userId, run.status, run.startTime, run.endTime, run.deletedTime, run.lifecycleStage, run.artifactUri, reader.kind]);
          for (const p of data.params) params.append([run.runId, p.key, p.value]);
          for (const t of data.tags) tags.append([run.runId, t.key, t.value]);
          for (const m of data.latestMetrics) latest.append([run.runId, m.key, m.value, m.step, m.timestamp]);
          for (const d of data.inputs) inputs.append([run.runId, d.name, d.digest, d.sourceType, d.source, d.context]);
          for (const p of data.params) paramKeys.add(p.key);
          for (const m of data.latestMetrics) metricKeys.add(m.key);
        },
        {
          extraUnits: 1,
          listed: selection.total,
          // Runs committed by an earlier attempt still contribute their keys to the view's columns.
          committedEarlier: async (run) => {
            try {
              const data = await selection.runData(run);
              for (const p of data.params) paramKeys.add(p.key);
              for (const m of data.latestMetrics) metricKeys.add(m.key);
            } catch {
              // its rows are committed; a key it alone had is only missing from the view
            }
          },
        },
      );
      ctx.expect({ units: runs + 1 });
      ctx.view('run_summary', runSummarySql([...paramKeys], [...metricKeys]));
    } finally {
      await reader.close();
    }
  },
  // Narrow tables, ~20 rows a run: small DuckDB blocks and buffers keep its memory flat with the store's size.
  { optionsSchema: mlflowRunsOptions, prepare: (options, log) => prepareRunSelection(options, log), staging: 'small' },
);
