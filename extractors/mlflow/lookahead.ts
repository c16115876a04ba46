// The REST reader lists experiments this way, and mlflow-metric-history reads a run's metric keys this way.

/** Batches of several async sources, in source order, with the next `lookahead` sources' first batch already requested. */
export async function* inOrderWithLookahead<T>(sources: readonly (() => AsyncIterator<T>)[], lookahead: number): AsyncGenerator<T> {
  const started: { iterator: AsyncIterator<T>; first: Promise<IteratorResult<T>> }[] = [];
  const start = (index: number): void => {
    const factory = sources[index];
    if (factory === undefined || started[index] !== undefined) return;
    const iterator = factory();
    const first = iterator.next();
    first.catch(() => undefined); // surfaced when its turn comes
    started[index] = { iterator, first };
  };
  try {
    for (let index = 0; index < sources.length; index++) {
      for (let ahead = index; ahead <= index + lookahead; ahead++) start(ahead);
      const { iterator, first } = started[index]!;
      for (let result = await first; !result.done; result = await iterator.next()) yield result.value;
    }
  } finally {
    // Sources started ahead but not consumed (an error or a stop) are closed.
    for (const entry of started) void entry?.iterator.return?.().catch(() => undefined);
  }
}

/** An iteration started before its consumer arrives: items are buffered until taken (`stop` ends it unconsumed). */
export interface StartedIteration<T> {
  readonly items: AsyncIterable<T>;
  stop(): void;
}

// Why: the REST reader starts its listing while the extractor is still being loaded; what the server
// answers meanwhile is kept (run listings: ids, attributes and data) and handed to the listing's consumer.
// The buffer is bounded: once `highWaterMark` items wait, the source is not pulled again until the
// consumer takes one, so a store of any size is listed at the consumer's pace (the source's own paging
// then waits too) instead of into memory.
/** Iterates `source` from now on into a buffer of at most `highWaterMark` items; `items` yields the buffer and then the rest, once. */
export function startIteration<T>(source: AsyncIterable<T>, highWaterMark: number): StartedIteration<T> {
  if (!Number.isInteger(highWaterMark) || highWaterMark < 1) throw new RangeError(`highWaterMark must be a positive integer (got ${highWaterMark})`);
  const iterator = source[Symbol.asyncIterator]();
  let buffer: T[] = [];
  /** Items of `buffer` before this one were handed out. */
  let head = 0;
  let ended: { error?: unknown } | undefined;
  /** The consumer waits for an item. */
  let wake: (() => void) | undefined;
  /** The pump waits for the consumer to take an item. */
  let taken: (() => void) | undefined;
  let stopped = false;
  const resumePump = (): void => {
    taken?.();
    taken = undefined;
  };
  void (async () => {
    try {
      while (!stopped) {
        if (buffer.length - head >= highWaterMark) {
          await new Promise<void>((resolve) => {
            taken = resolve;
          });
          continue;
        }
        const next = await iterator.next();
        if (next.done === true || stopped) break;
        buffer.push(next.value);
        wake?.();
      }
      ended = {};
    } catch (error) {
      ended = { error };
    } finally {
      wake?.();
      if (stopped) void iterator.return?.().catch(() => undefined);
    }
  })();
  async function* items(): AsyncGenerator<T> {
    try {
      for (;;) {
        if (head < buffer.length) {
          const item = buffer[head++]!;
          if (head === buffer.length) {
            buffer = [];
            head = 0;
          }
          resumePump();
          yield item;
          continue;
        }
        if (ended !== undefined) {
          if ('error' in ended) throw ended.error;
          return;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      stopped = true;
      resumePump();
    }
  }
  return {
    items: items(),
    stop: () => {
      stopped = true;
      resumePump();
    },
  };
}
