// Run data read ahead of the extractor, in the time its main thread would otherwise wait: while the
// staging database opens and while a group of units commits (DuckDB works on its own threads then).
// Reading a file store is synchronous work on the main thread (~1.5 ms a run), so without this the
// waits and the reading add up instead of overlapping.
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { MlflowReader, RunData, RunInfo, RunListing } from './types.js';

/** Listings (with their run data) read ahead of the consumer at most. */
export const READ_AHEAD_RUNS = 64;

// Why: one pump that lists and reads ahead, a consumer that takes listings in order, and the data by run.
export class RunDataReadAhead {
  private readonly iterator: AsyncIterator<RunListing>;
  /** Listings read, not yet taken by the consumer, in listing order. */
  private readonly queue: RunListing[] = [];
  /** Run data read ahead, by run id, until the consumer asks for it. */
  private readonly ahead = new Map<string, Promise<RunData>>();
  private wakeConsumer: (() => void) | undefined;
  private wakePump: (() => void) | undefined;
  private failure: { error: unknown } | undefined;
  private finished = false;
  private stopped = false;
  /** Resolves once the first listing was read (or the listing ended or failed). */
  readonly started: Promise<void>;

  constructor(
    private readonly reader: MlflowReader,
    listings: AsyncIterable<RunListing>,
    private readonly limit = READ_AHEAD_RUNS,
  ) {
    this.iterator = listings[Symbol.asyncIterator]();
    let markStarted!: () => void;
    this.started = new Promise((resolve) => {
      markStarted = resolve;
    });
    void this.pump(markStarted);
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
    let previous: string | undefined;
    try {
      for (;;) {
        const listing = this.queue.shift();
        if (listing !== undefined) {
          // Data of the listing before, not asked for while it was current (a unit committed by an
          // earlier attempt is skipped), is dropped: read-ahead data never piles up.
          if (previous !== undefined) this.ahead.delete(previous);
          previous = listing.ok ? listing.run.runId : undefined;
          this.wake('pump');
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
      this.wake('pump');
    }
  }

  private wake(which: 'pump' | 'consumer'): void {
    const wake = which === 'pump' ? this.wakePump : this.wakeConsumer;
    if (which === 'pump') this.wakePump = undefined;
    else this.wakeConsumer = undefined;
    wake?.();
  }

  private async pump(markStarted: () => void): Promise<void> {
    try {
      while (!this.stopped) {
        if (this.queue.length >= this.limit) {
          await new Promise<void>((resolve) => {
            this.wakePump = resolve;
          });
          continue;
        }
        const next = await this.iterator.next();
        if (next.done === true) break;
        const listing = next.value;
        if (listing.ok && !this.stopped) {
          const read = this.reader.runData(listing.run);
          read.catch(() => undefined); // handed to the consumer's unit, which reports it
          this.ahead.set(listing.run.runId, read);
        }
        this.queue.push(listing);
        markStarted();
        const consumerWaiting = this.wakeConsumer !== undefined;
        this.wake('consumer');
        // Reading ahead must not hold up DuckDB's callbacks (a commit that finished) or a consumer with work.
        if (!consumerWaiting) await nextTurn();
      }
    } catch (error) {
      this.failure = { error };
    } finally {
      this.finished = true;
      markStarted();
      this.wake('consumer');
      if (this.stopped) await this.iterator.return?.(undefined).catch(() => undefined);
    }
  }
}
