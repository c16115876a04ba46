// Benchmark extractor: writes `rows` metric-history-like rows in units of `unitRows` rows.
import { defineExtractor } from '../extractors/sdk/index.js';

export default defineExtractor<{ rows: number; unitRows?: number }>('bench-sdk-write', async (ctx) => {
  const total = ctx.options.rows;
  const unitRows = ctx.options.unitRows ?? 10_000;
  const history = ctx.table('metric_history', { run_id: 'VARCHAR', step: 'BIGINT', value: 'DOUBLE', ts: 'TIMESTAMP' });
  const units = Math.ceil(total / unitRows);
  for (let unit = 0; unit < units; unit++) {
    await ctx.unit(`unit-${unit}`, async () => {
      const end = Math.min(total, (unit + 1) * unitRows);
      for (let i = unit * unitRows; i < end; i++) history.append([`run-${i % 1000}`, i, i * 0.5, 1_700_000_000_000 + i]);
    });
    ctx.progress(unit + 1, units, 'units');
  }
});
