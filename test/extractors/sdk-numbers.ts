// A deterministic test extractor: `units` units, each writing `rowsPerUnit` rows to `items` and one
// row to `unit_meta`. Options let tests pause inside a unit, hog memory, or misstate expectations.
import { z } from 'zod';
import { defineExtractor } from '../../extractors/sdk/index.js';

const optionsSchema = z.object({
  units: z.number().int().nonnegative().default(40),
  rowsPerUnit: z.number().int().nonnegative().default(300),
  /** Sleep per unit, so a kill can land anywhere in a run. */
  sleepMs: z.number().nonnegative().default(2),
  /** Inside this unit, after appending its rows, log 'holding unit <key>' and wait forever. */
  holdInUnit: z.string().optional(),
  /** Expectation to declare (defaults to the truth). */
  expectUnits: z.number().int().optional(),
  expectRowsPerUnit: z.number().optional(),
  /** Bytes of JS memory to allocate and keep, then idle (memory self-check test). */
  hogBytes: z.number().int().nonnegative().optional(),
  /** Rows appended outside any unit, after the units. */
  looseRows: z.number().int().nonnegative().default(0),
  /** Record a view for the publisher. */
  withView: z.boolean().default(false),
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export default defineExtractor<z.infer<typeof optionsSchema>>(
  'sdk-numbers',
  async (ctx) => {
    const o = ctx.options;
    if (o.hogBytes !== undefined) {
      const hog: Buffer[] = [];
      for (let held = 0; held < o.hogBytes; held += 16 << 20) hog.push(Buffer.alloc(16 << 20, 1));
      ctx.log.info(`holding ${hog.length} buffers`);
      for (;;) await sleep(50);
    }
    const items = ctx.table('items', {
      unit_key: 'VARCHAR',
      i: 'INTEGER',
      big: 'BIGINT',
      value: 'DOUBLE',
      at: 'TIMESTAMP',
      label: 'VARCHAR',
      flag: 'BOOLEAN',
      day: 'DATE',
    });
    const meta = ctx.table('unit_meta', { unit_key: 'VARCHAR', rows: 'BIGINT' });
    if (o.withView) ctx.view('unit_totals', 'SELECT unit_key, count(*) AS n FROM items GROUP BY unit_key');
    ctx.expect({
      units: o.expectUnits ?? o.units,
      rowsPerUnit: { items: o.expectRowsPerUnit ?? o.rowsPerUnit, unit_meta: 1 },
    });
    for (let u = 0; u < o.units; u++) {
      if (ctx.stopRequested) break;
      const key = `u-${String(u).padStart(5, '0')}`;
      await ctx.unit(key, async () => {
        for (let i = 0; i < o.rowsPerUnit; i++) {
          items.append([key, i, BigInt(u) * 1_000_000n + BigInt(i), u + i / 7, 1_700_000_000_000 + u * 1000 + i, `label-${u}-${i}`, i % 3 === 0, `2024-01-${String((i % 28) + 1).padStart(2, '0')}`]);
        }
        if (o.holdInUnit === key) {
          ctx.log.info(`holding unit ${key}`);
          for (;;) await sleep(50);
        }
        meta.append([key, o.rowsPerUnit]);
        if (o.sleepMs > 0) await sleep(o.sleepMs);
      });
      ctx.progress(u + 1, o.units, 'units');
    }
    for (let i = 0; i < o.looseRows; i++) meta.append([`loose-${i}`, 0]);
  },
  { optionsSchema },
);
