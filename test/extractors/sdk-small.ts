// A test extractor with staging: 'small' (narrow tables, a few rows per unit, as mlflow-runs writes):
// `units` units of `rowsPerUnit` rows in `items`, for the small staging layout's tests.
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineExtractor } from '../../extractors/sdk/index.js';

const optionsSchema = z.object({
  units: z.number().int().nonnegative().default(1000),
  rowsPerUnit: z.number().int().positive().default(10),
  /** Pause `sleepMs` after every `sleepEvery` units, so groups commit on time as well as on size. */
  sleepEvery: z.number().int().positive().default(100),
  sleepMs: z.number().nonnegative().default(1),
});

export default defineExtractor<z.infer<typeof optionsSchema>>(
  'sdk-small',
  async (ctx) => {
    const o = ctx.options;
    const items = ctx.table('items', { unit_key: 'VARCHAR', i: 'INTEGER', label: 'VARCHAR', value: 'DOUBLE' });
    ctx.expect({ units: o.units, rowsPerUnit: { items: o.rowsPerUnit } });
    for (let u = 0; u < o.units; u++) {
      if (ctx.stopRequested) break;
      const key = `unit-${String(u).padStart(6, '0')}`;
      await ctx.unit(key, async () => {
        for (let i = 0; i < o.rowsPerUnit; i++) items.append([key, i, `a label of unit ${u}, row ${i}`, u + i / 10]);
      });
      ctx.progress(u + 1, o.units, 'units');
      if ((u + 1) % o.sleepEvery === 0) await sleep(o.sleepMs);
    }
  },
  { optionsSchema, staging: 'small' },
);
