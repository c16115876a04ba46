// The surface an extractor sees. Implementations live beside this file (context.ts, table.ts, ...).
// Extractors are written against these types only:
//
//   export default defineExtractor<MyOptions>('my-extractor', async (ctx) => {
//     const runs = ctx.table('runs', { run_id: 'VARCHAR', start_time: 'TIMESTAMP', value: 'DOUBLE' });
//     ctx.expect({ units: total });
//     for await (const run of source) {
//       await ctx.unit(run.id, async () => { runs.append([run.id, run.start, run.value]); });
//       ctx.progress(++done, total, 'runs');
//     }
//   });

/** DuckDB column type names as written in SQL, e.g. 'VARCHAR', 'DOUBLE', 'BIGINT', 'TIMESTAMP', 'BOOLEAN', 'JSON'. */
export type ColumnType = string;
export type Columns = Record<string, ColumnType>;
export type CellValue = string | number | bigint | boolean | Date | null;

export interface TableWriter {
  readonly name: string;
  /** Appends one row (values in column order). Buffered; flushed every `batch_rows`. */
  append(row: readonly CellValue[]): void;
  /** Rows appended so far in this attempt (committed or not). */
  readonly rowsAppended: number;
}

export interface Expectation {
  /** Units that must be checkpointed in total (after skips). */
  units?: number;
  /** Per table: expected rows per unit, compared over the whole output. */
  rowsPerUnit?: Record<string, number>;
  /** Relative tolerance, e.g. 0.05 = ±5%. Default 0. */
  tolerance?: number;
}

export interface ExtractorLog {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface ExtractorContext<Options = Record<string, unknown>> {
  readonly options: Options;
  readonly runId: string;
  readonly job: string;
  readonly attempt: number;
  /** Path of the read-only warehouse (for derived extractors); may not exist yet. */
  readonly warehouse: string | undefined;
  readonly log: ExtractorLog;
  /** Reports progress; `done` must not decrease. Drives the supervisor's stall clock. */
  progress(done: number, total: number | undefined, unit: string): void;
  /** Declares an output table (created in staging if absent). Call before writing. */
  table(name: string, columns: Columns): TableWriter;
  /**
   * Runs one unit of work. Its rows and a checkpoint row for `key` commit in ONE transaction.
   * Returns false without running `work` when an earlier attempt already committed `key`.
   */
  unit(key: string, work: () => Promise<void>): Promise<boolean>;
  /** True when `key` was committed by this or an earlier attempt. */
  isDone(key: string): boolean;
  /**
   * Declares a view the publisher (re)creates in the warehouse right after this job's tables, in the
   * same transaction, e.g. ctx.view('run_summary', 'SELECT ... FROM runs JOIN ...'). Names are plain identifiers.
   */
  view(name: string, sql: string): void;
  /** Records a unit skipped as bad input (listed in the run's result; see `on_bad_run`). */
  skip(key: string, error: string): void;
  expect(expectation: Expectation): void;
  /** Set when the supervisor asked for a clean stop; long loops should check it. */
  readonly stopRequested: boolean;
}

/** `prepared` is what the extractor's prepare step returned (undefined without one). */
export type ExtractorMain<Options, Prepared = undefined> = (ctx: ExtractorContext<Options>, prepared: Prepared) => Promise<void>;

/**
 * Optional first step, called with the parsed options before DuckDB is loaded and the staging database
 * opened (a few hundred ms of every start), so that slow first reads, e.g. a tracking server's listing,
 * overlap them. main receives what it returned. A returned promise is awaited before the staging
 * database is opened: it should resolve once the slow reads are underway (not when they are done), and
 * its rejection fails the run. It must not write anything: nothing can be committed before main runs.
 */
export type ExtractorPrepare<Options, Prepared> = (options: Options, log: ExtractorLog) => Prepared;
