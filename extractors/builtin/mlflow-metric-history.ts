// Built-in extractor `mlflow-metric-history`: every logged value of every metric of every selected
// run, one unit per run, streamed key by key in bounded batches (memory does not grow with history).
//
// Table: metric_history(run_id, key, step, timestamp, value)   (NaN/±Infinity preserved)
import { z } from 'zod';
import { forEachRun, mlflowSourceOptions, selectRuns } from '../mlflow/selection.js';
import { defineExtractor } from '../sdk/index.js';

export const mlflowMetricHistoryOptions = z.strictObject({ ...mlflowSourceOptions });
export type MlflowMetricHistoryOptions = z.infer<typeof mlflowMetricHistoryOptions>;

export default defineExtractor<MlflowMetricHistoryOptions>(
  'mlflow-metric-history',
  async (ctx) => {
    const history = ctx.table('metric_history', { run_id: 'VARCHAR', key: 'VARCHAR', step: 'BIGINT', timestamp: 'TIMESTAMP', value: 'DOUBLE' });
    const { reader, runs } = await selectRuns(ctx);
    try {
      ctx.expect({ units: runs.length });
      await forEachRun(ctx, runs, async (run) => {
        for (const key of await reader.metricKeys(run)) {
          for await (const batch of reader.metricHistory(run, key)) {
            for (const point of batch) history.append([run.runId, key, point.step, point.timestamp, point.value]);
          }
        }
      });
    } finally {
      await reader.close();
    }
  },
  { optionsSchema: mlflowMetricHistoryOptions },
);
