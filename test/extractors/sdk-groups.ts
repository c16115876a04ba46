// A test extractor for units committed in groups: `units` units with `rowsPerUnit` rows each into
// `chunky` (chunk-path types) and `rowwise` (a DATE column: the Appender's row path), some of which
// fail after appending their rows. Options name the failing units and one unit that writes far more
// rows than the Appender's cache may hold while earlier units share its transaction.
import { z } from 'zod';
import { defineExtractor } from '../../extractors/sdk/index.js';

const optionsSchema = z.object({
  units: z.number().int().nonnegative().default(60),
  rowsPerUnit: z.number().int().nonnegative().default(50),
  /** Units (by index) that throw after appending their rows; they are skipped with ctx.skip. */
  failing: z.array(z.number().int()).default([]),
  /** One unit (by index) that appends `bigRows` rows instead of rowsPerUnit. */
  bigUnit: z.number().int().optional(),
  bigRows: z.number().int().nonnegative().default(0),
  /** Sleep per unit in ms (0 = none). */
  sleepMs: z.number().nonnegative().default(0),
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export default defineExtractor<z.infer<typeof optionsSchema>>(
  'sdk-groups',
  async (ctx) => {
    const o = ctx.options;
    const chunky = ctx.table('chunky', { unit_key: 'VARCHAR', i: 'BIGINT', value: 'DOUBLE', at: 'TIMESTAMP' });
    const rowwise = ctx.table('rowwise', { unit_key: 'VARCHAR', i: 'INTEGER', day: 'DATE' });
    const failing = new Set(o.failing);
    for (let u = 0; u < o.units; u++) {
      const key = `g-${String(u).padStart(5, '0')}`;
      const rows = u === o.bigUnit ? o.bigRows : o.rowsPerUnit;
      try {
        await ctx.unit(key, async () => {
          for (let i = 0; i < rows; i++) {
            chunky.append([key, i, u + i / 3, 1_700_000_000_000 + i]);
            if (i < 100) rowwise.append([key, i, `2024-02-${String((i % 28) + 1).padStart(2, '0')}`]);
          }
          if (o.sleepMs > 0) await sleep(o.sleepMs);
          if (failing.has(u)) throw new Error(`unit ${key} fails on purpose after ${rows} rows`);
        });
      } catch (error) {
        if (!failing.has(u)) throw error;
        ctx.skip(key, (error as Error).message);
      }
      ctx.progress(u + 1, o.units, 'units');
    }
  },
  { optionsSchema },
);
