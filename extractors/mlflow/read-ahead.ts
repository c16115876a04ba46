// Run listings and run data read ahead of the extractor, in the time its main thread would otherwise
// wait: while the staging database opens and while a group of units commits (DuckDB works on its own
// threads then). Reading a file store is synchronous work on the main thread (~1.5 ms a run), so
// without this the waits and the reading add up instead of overlapping. The listing (ids and
// attributes, what selectRuns holds for every extractor) runs to its end, so the number of runs is
// known early for progress; run data is read at most `limit` runs ahead of the consumer.
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { MlflowReader, RunData, RunInfo, RunListing } from './types.js';

/** Runs whose data is read ahead of the consumer at most. */
export const READ_AHEAD_RUNS = 64;

// Why: a listing pump, a data pump bounded by the consumer's position, and the data handed out by run.
export class RunDataReadAhead {
  private readonly iterator: AsyncIterator<RunListing>;
  /** Every listing read so far, in listing order; the consumer is at `taken`. */
  private readonly listed: RunListing[] = [];
  private taken = 0;
  /** Listings whose data was read (or that need none). */
  private dataRead = 0;
  /** Run data read ahead, by run id, until the consumer asks for it. */
  private readonly ahead = new Map<string, Promise<RunData>>();
  private wakeConsumer: (() => void) | undefined;
  private wakeDataPump: (() => void) | undefined;
  private failure: { error: unknown } | undefined;
  private finished = false;
  private stopped = false;
  /** Resolves once the first listing was read (or the listing ended or failed). */
  readonly started: Promise<void>;
  private markStarted!: () => void;

  constructor(
    private readonly reader: MlflowReader,
    listings: AsyncIterable<RunListing>,
    private readonly limit = READ_AHEAD_RUNS,
  ) {
    this.iterator = listings[Symbol.asyncIterator]();
    this.started = new Promise((resolve) => {
      this.markStarted = resolve;
    });
    void this.listPump();
    void this.dataPump();
  }

  /** The number of runs listed, once the listing has ended without failing. */
  get total(): number | undefined {
    return this.finished && this.failure === undefined ? this.listed.length : undefined;
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
        if (this.taken < this.listed.length) {
          // Data of the listing before, not asked for while it was current (a unit committed by an
          // earlier attempt is skipped), is dropped: read-ahead data never piles up.
          const previous = this.taken > 0 ? this.listed[this.taken - 1] : undefined;
          if (previous?.ok === true) this.ahead.delete(previous.run.runId);
          const listing = this.listed[this.taken++]!;
          this.wake('data');
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
      this.wake('data');
    }
  }

  private wake(which: 'data' | 'consumer'): void {
    const wake = which === 'data' ? this.wakeDataPump : this.wakeConsumer;
    if (which === 'data') this.wakeDataPump = undefined;
    else this.wakeConsumer = undefined;
    wake?.();
  }

  private async listPump(): Promise<void> {
    try {
      while (!this.stopped) {
        const next = await this.iterator.next();
        if (next.done === true) break;
        // duckvisor: allow unbounded-accumulation -- run listings (ids and attributes) are what selectRuns holds for every extractor
        this.listed.push(next.value);
        this.markStarted();
        this.wake('consumer');
        this.wake('data');
        // A file store lists synchronously: let DuckDB's callbacks and the consumer in now and then.
        if (this.listed.length % this.limit === 0) await nextTurn();
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
      if (this.dataRead >= this.listed.length || this.dataRead >= this.taken + this.limit) {
        if (this.finished && this.dataRead >= this.listed.length) return;
        await new Promise<void>((resolve) => {
          this.wakeDataPump = resolve;
        });
        continue;
      }
      // A listing the consumer already took is read by its unit, not here.
      if (this.dataRead < this.taken) {
        this.dataRead = this.taken;
        continue;
      }
      const listing = this.listed[this.dataRead++]!;
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
