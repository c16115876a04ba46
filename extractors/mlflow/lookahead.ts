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
