// Run listings and run data read ahead of the extractor, in the time its main thread would otherwise
// wait: while the staging database opens and while a group of units commits (DuckDB works on its own
// threads then). Reading a file store is synchronous work on the main thread (~1.5 ms a run), so
// without this the waits and the reading add up instead of overlapping. Both are bounded, so memory
// does not grow with the store: listings are read at most LISTING_WINDOW ahead of the consumer and
// dropped once taken, run data at most `limit` runs ahead. The number of runs is known when the
// listing has ended (early for a store of up to LISTING_WINDOW runs), or before from the store's own
// count when it has one (MlflowReader.countRuns).
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { MlflowReader, RunData, RunInfo, RunListing } from './types.js';

/** Runs whose data is read ahead of the consumer at most. */
export const READ_AHEAD_RUNS = 64;
/**
 * Listings held ahead of the consumer at most. Listing all runs first held every run's attributes for
 * the whole extraction: mlflow-runs on a store of 10,920 runs peaked ~4 MiB above one of 5,460 runs.
 */
export const LISTING_WINDOW = 256;
/** Listings read in one turn of the event loop at most (a file store's listing is synchronous work). */
const LISTING_TURN = READ_AHEAD_RUNS;

// Why: a listing pump and a data pump, both bounded by the consumer's position, and the data handed out by run.
export class RunDataReadAhead {
  private readonly iterator: AsyncIterator<RunListing>;
  /** Listings read and not yet taken, in listing order; the consumer takes from the front. */
  private readonly queue: RunListing[] = [];
  /** Listings read in total. */
  private listedCount = 0;
  /** Listings at the front of `queue` whose data was read ahead (or that need none). */
  private dataAhead = 0;
  /** Run data read ahead, by run id, until the consumer asks for it. */
  private readonly ahead = new Map<string, Promise<RunData>>();
  /** The listing taken last: its data, if not asked for while it was current, is dropped at the next take. */
  private current: RunListing | undefined;
  private wakeConsumer: (() => void) | undefined;
  private wakeDataPump: (() => void) | undefined;
  private wakeListPump: (() => void) | undefined;
  private failure: { error: unknown } | undefined;
  private finished = false;
  private stopped = false;
  /** The store's count of the runs, while the listing has not ended. */
  private counted: number | undefined;
  /** Resolves once the first listing was read (or the listing ended or failed). */
  readonly started: Promise<void>;
  private markStarted!: () => void;

  constructor(
    private readonly reader: MlflowReader,
    listings: AsyncIterable<RunListing>,
    private readonly limit = READ_AHEAD_RUNS,
    count?: Promise<number | undefined>,
  ) {
    void count?.then(
      (runs) => {
        this.counted = runs;
      },
      () => undefined, // only progress goes without a total
    );
    this.iterator = listings[Symbol.asyncIterator]();
    this.started = new Promise((resolve) => {
      this.markStarted = resolve;
    });
    void this.listPump();
    void this.dataPump();
  }

  /** The number of runs: the store's count until the listing has ended, then the number listed (none after a failure). */
  get total(): number | undefined {
    if (!this.finished) return this.counted;
    return this.failure === undefined ? this.listedCount : undefined;
  }

  /** The run's data: read ahead (handed out once), or read now. Errors are the reader's (MlflowDataError for bad data). */
  runData(run: RunInfo): Promise<RunData> {
    const read = this.ahead.get(run.runId);
    if (read === undefined) return this.reader.runData(run);
    this.ahead.delete(run.runId);
    return read;
  }

  /** The listings in order (to be iterated once); a listing failure is raised after the listings before it. */
  async *listings(): AsyncGenerator<RunListing> {
    try {
      for (;;) {
        const listing = this.queue.shift();
        if (listing !== undefined) {
          // Data of the listing before, not asked for while it was current (a unit committed by an
          // earlier attempt is skipped), is dropped: read-ahead data never piles up.
          if (this.current?.ok === true) this.ahead.delete(this.current.run.runId);
          this.current = listing;
          this.dataAhead = Math.max(0, this.dataAhead - 1);
          this.wake('data');
          this.wake('list');
          yield listing;
          continue;
        }
        if (this.failure !== undefined) throw this.failure.error;
        if (this.finished) return;
        await new Promise<void>((resolve) => {
          this.wakeConsumer = resolve;
        });
      }
    } finally {
      this.stopped = true;
      this.ahead.clear();
      this.current = undefined;
      this.wake('data');
      this.wake('list');
    }
  }

  private wake(which: 'data' | 'consumer' | 'list'): void {
    const wake = which === 'data' ? this.wakeDataPump : which === 'list' ? this.wakeListPump : this.wakeConsumer;
    if (which === 'data') this.wakeDataPump = undefined;
    else if (which === 'list') this.wakeListPump = undefined;
    else this.wakeConsumer = undefined;
    wake?.();
  }

  private async listPump(): Promise<void> {
    try {
      while (!this.stopped) {
        if (this.queue.length >= Math.max(LISTING_WINDOW, this.limit)) {
          await new Promise<void>((resolve) => {
            this.wakeListPump = resolve;
          });
          continue;
        }
        const next = await this.iterator.next();
        if (next.done === true) break;
        this.queue.push(next.value);
        this.listedCount++;
        this.markStarted();
        this.wake('consumer');
        this.wake('data');
        // A file store lists synchronously: let DuckDB's callbacks and the consumer in now and then
        // (also when no run data is read ahead: limit 0).
        if (this.listedCount % LISTING_TURN === 0) await nextTurn();
      }
    } catch (error) {
      this.failure = { error };
    } finally {
      this.finished = true;
      this.markStarted();
      this.wake('consumer');
      this.wake('data');
      if (this.stopped) await this.iterator.return?.(undefined).catch(() => undefined);
    }
  }

  private async dataPump(): Promise<void> {
    while (!this.stopped) {
      if (this.dataAhead >= this.queue.length || this.dataAhead >= this.limit) {
        if (this.finished && this.dataAhead >= this.queue.length) return;
        await new Promise<void>((resolve) => {
          this.wakeDataPump = resolve;
        });
        continue;
      }
      const listing = this.queue[this.dataAhead++]!;
      if (listing.ok) {
        const read = this.reader.runData(listing.run);
        read.catch(() => undefined); // handed to the consumer's unit, which reports it
        this.ahead.set(listing.run.runId, read);
      }
      // Reading ahead must not hold up DuckDB's callbacks (a commit that finished) or the consumer.
      await nextTurn();
    }
  }
}
