// Built-in extractor `mlflow-metric-history`: every logged value of every metric of every selected
// run, one unit per run, streamed key by key in bounded batches (memory does not grow with history).
// The REST reader prefetches the history of whole windows of listed runs (get-history-bulk, or
// metrics/get-history with several requests in flight); for what it did not prefetch (a run past the
// bulk cap, a failed request) it answers one metrics/get-history request per run and key, so the next
// few keys' first pages are requested while the current key is written (at most KEY_LOOKAHEAD pages held).
//
// Table: metric_history(run_id, key, step, timestamp, value)   (NaN/±Infinity preserved)
import { z } from 'zod';
import { inOrderWithLookahead } from '../mlflow/lookahead.js';
import { RunDataReadAhead } from '../mlflow/read-ahead.js';
import { forEachListedRun, mlflowSourceOptions, selectRunsStreaming } from '../mlflow/selection.js';
import type { MetricPoint } from '../mlflow/types.js';
import { defineExtractor } from '../sdk/index.js';

export const mlflowMetricHistoryOptions = z.strictObject({ ...mlflowSourceOptions });
export type MlflowMetricHistoryOptions = z.infer<typeof mlflowMetricHistoryOptions>;

/** Keys whose first page is requested ahead of the key being written. */
const KEY_LOOKAHEAD = 3;

export default defineExtractor<MlflowMetricHistoryOptions>(
  'mlflow-metric-history',
  async (ctx) => {
    const history = ctx.table('metric_history', { run_id: 'VARCHAR', key: 'VARCHAR', step: 'BIGINT', timestamp: 'TIMESTAMP', value: 'DOUBLE' });
    const { reader, listings, count } = await selectRunsStreaming(ctx);
    try {
      // The listing is read a window ahead (no run data: this extractor reads histories), so the runs'
      // attributes are never all held at once; the total comes from the store's count, or once the listing has ended.
      const listing = new RunDataReadAhead(reader, listings, 0, count());
      const runs = await forEachListedRun(ctx, listing.listings(), async (run) => {
        const keys = await reader.metricKeys(run);
        const sources = keys.map((key) => () => reader.metricHistory(run, key)[Symbol.asyncIterator]());
        for await (const batch of inOrderWithLookahead<MetricPoint[]>(sources, reader.kind === 'rest' ? KEY_LOOKAHEAD : 0)) {
          for (const point of batch) history.append([run.runId, point.key, point.step, point.timestamp, point.value]);
        }
      }, { listed: () => listing.total });
      ctx.expect({ units: runs });
    } finally {
      await reader.close();
    }
  },
  { optionsSchema: mlflowMetricHistoryOptions },
);
