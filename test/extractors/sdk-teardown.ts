// A test extractor that fails (or is stopped) while its table writers are still being opened, to
// prove that teardown waits for DuckDB's in-flight work instead of closing under it.
import { defineExtractor, type TableWriter } from '../../extractors/sdk/index.js';

/** How the extractor ends: see each case below. */
type Mode = 'throw-sync' | 'throw-after-await' | 'throw-in-unit' | 'unit-fails-then-continues' | 'append-until-stopped';

export default defineExtractor<{ mode: Mode; tables?: number }>('sdk-teardown', async (ctx) => {
  const tables: TableWriter[] = [];
  for (let n = 0; n < (ctx.options.tables ?? 2); n++) tables.push(ctx.table(`t${n}`, { key: 'VARCHAR', n: 'BIGINT', at: 'TIMESTAMP' }));
  for (const table of tables) table.append(['early', 1, 1_700_000_000_000]);
  switch (ctx.options.mode) {
    case 'throw-sync':
      throw new Error('teardown test: thrown right after declaring tables');
    case 'throw-after-await':
      await Promise.resolve();
      throw new Error('teardown test: thrown after one await');
    case 'throw-in-unit':
      await ctx.unit('only', async () => {
        for (const table of tables) table.append(['in-unit', 2, 1_700_000_000_000]);
        throw new Error('teardown test: thrown inside a unit');
      });
      return;
    case 'unit-fails-then-continues':
      // A failed unit rolls back; its writers get fresh Appenders and the next unit commits normally.
      await ctx
        .unit('bad', async () => {
          for (const table of tables) for (let i = 0; i < 3; i++) table.append(['bad', i, 1_700_000_000_000]);
          throw new Error('bad unit');
        })
        .catch(() => ctx.skip('bad', 'bad unit'));
      for (const table of tables) table.append(['between', 4, 1_700_000_000_000]);
      await ctx.unit('good', async () => {
        for (const table of tables) table.append(['good', 5, 1_700_000_000_000]);
      });
      return;
    case 'append-until-stopped':
      // Says it is up before the tables are open, then keeps declaring, appending and committing units.
      process.stderr.write('declared tables\n');
      for (let unit = 0; !ctx.stopRequested; unit++) {
        tables.push(ctx.table(`extra${unit}`, { key: 'VARCHAR' }));
        await ctx.unit(`u${unit}`, async () => {
          for (const table of tables) table.append(table.name.startsWith('extra') ? ['x'] : ['loose', unit, 1_700_000_000_000]);
        });
      }
      return;
    default:
      throw new Error(`unknown mode ${String(ctx.options.mode)}`);
  }
});
