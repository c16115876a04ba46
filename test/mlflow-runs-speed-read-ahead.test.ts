// The read-ahead behind mlflow-runs (extractors/mlflow/read-ahead.ts): listings come in order, each
// run's data is the reader's (read once), a bad run's error reaches the unit that asks for its data,
// a listing failure comes after the listings before it, and no more than the limit is read ahead.
import test from 'ava';
import { LISTING_WINDOW, RunDataReadAhead } from '../extractors/mlflow/read-ahead.js';
import { MlflowDataError, type MlflowReader, type RunData, type RunInfo, type RunListing } from '../extractors/mlflow/types.js';

function run(index: number): RunInfo {
  return {
    runId: `run-${index}`, experimentId: '1', runName: null, userId: null, status: 'FINISHED', startTime: index, endTime: null, deletedTime: null,
    lifecycleStage: 'active', artifactUri: null,
  };
}

/** A reader whose runData counts its calls; run 3's data is bad. */
function fakeReader(): { reader: MlflowReader; reads: string[] } {
  const reads: string[] = [];
  const reader = {
    runData: async (info: RunInfo): Promise<RunData> => {
      reads.push(info.runId);
      if (info.runId === 'run-3') throw new MlflowDataError(info.runId, 'params/x', 'unreadable file (EACCES)');
      return { params: [{ key: 'p', value: info.runId }], tags: [], latestMetrics: [], inputs: [] };
    },
  } as unknown as MlflowReader;
  return { reader, reads };
}

async function* listingsOf(count: number, failAfter?: number): AsyncGenerator<RunListing> {
  for (let index = 0; index < count; index++) {
    if (index === failAfter) throw new Error('the listing failed');
    yield { ok: true, run: run(index) };
  }
}

/** `count` listings that count how many were pulled from them. */
function countedListings(count: number): { listings: AsyncIterable<RunListing>; pulled: () => number } {
  let pulled = 0;
  async function* counted(): AsyncGenerator<RunListing> {
    for await (const listing of listingsOf(count)) {
      pulled++;
      yield listing;
    }
  }
  return { listings: counted(), pulled: () => pulled };
}

test('listings in order, each run read once, a bad run failing where its data is asked for', async (t) => {
  const { reader, reads } = fakeReader();
  const ahead = new RunDataReadAhead(reader, listingsOf(200), 8);
  await ahead.started;
  const seen: string[] = [];
  for await (const listing of ahead.listings()) {
    if (!listing.ok) continue;
    seen.push(listing.run.runId);
    if (listing.run.runId === 'run-3') {
      await t.throwsAsync(() => ahead.runData(listing.run), { instanceOf: MlflowDataError });
      continue;
    }
    t.is((await ahead.runData(listing.run)).params[0]?.value, listing.run.runId);
    t.true(reads.length <= seen.length + 8 + 1, `read ${reads.length} with ${seen.length} taken: at most the limit ahead`);
  }
  t.deepEqual(seen, Array.from({ length: 200 }, (_, index) => `run-${index}`));
  t.deepEqual(reads, seen, 'every run read once, in order');
  t.is(ahead.total, 200);
});

test('a listing failure comes after the listings before it', async (t) => {
  const { reader } = fakeReader();
  const ahead = new RunDataReadAhead(reader, listingsOf(50, 20), 4);
  const seen: string[] = [];
  await t.throwsAsync(
    async () => {
      for await (const listing of ahead.listings()) if (listing.ok) seen.push(listing.run.runId);
    },
    { message: 'the listing failed' },
  );
  t.is(seen.length, 20);
  t.is(ahead.total, undefined, 'no total for a listing that failed');
});

test('the listing runs ahead of the consumer (the total of a store within the window is known early); the data does not', async (t) => {
  const { reader, reads } = fakeReader();
  const ahead = new RunDataReadAhead(reader, listingsOf(LISTING_WINDOW), 8);
  for await (const listing of ahead.listings()) {
    if (!listing.ok) continue;
    for (let wait = 0; wait < 200 && ahead.total === undefined; wait++) await new Promise((resolve) => setTimeout(resolve, 5));
    t.is(ahead.total, LISTING_WINDOW, 'listed to the end while the first run is handled');
    t.true(reads.length <= 1 + 8 + 1, `${reads.length} runs read ahead of the first`);
    break;
  }
});

test('listings are held at most a window ahead of the consumer, so memory does not grow with the store', async (t) => {
  const { reader } = fakeReader();
  const { listings, pulled } = countedListings(5 * LISTING_WINDOW);
  const ahead = new RunDataReadAhead(reader, listings, 8);
  let taken = 0;
  let mostAhead = 0;
  for await (const listing of ahead.listings()) {
    taken++;
    if (listing.ok) await ahead.runData(listing.run).catch(() => undefined);
    // Give the listing every chance to run ahead.
    if (taken % 100 === 1) await new Promise((resolve) => setTimeout(resolve, 10));
    mostAhead = Math.max(mostAhead, pulled() - taken);
    if (taken < 4 * LISTING_WINDOW) t.is(ahead.total, undefined, `the total is unknown while ${pulled()} of ${5 * LISTING_WINDOW} are listed`);
  }
  t.is(taken, 5 * LISTING_WINDOW);
  t.is(ahead.total, 5 * LISTING_WINDOW, 'the total once the listing ended');
  t.true(mostAhead <= LISTING_WINDOW + 1, `listed at most the window ahead (was ${mostAhead} ahead)`);
  t.true(mostAhead >= LISTING_WINDOW - 1, `and did run ahead to the window (${mostAhead})`);
});

test('a listing read without run data (limit 0) still lets other callbacks in while it runs ahead', async (t) => {
  const { reader } = fakeReader();
  const { listings, pulled } = countedListings(2 * LISTING_WINDOW);
  // The listing starts now; a callback queued now runs when the listing first gives up its turn.
  const ahead = new RunDataReadAhead(reader, listings, 0);
  const pulledWhenCalledBack = await new Promise<number>((resolve) => setImmediate(() => resolve(pulled())));
  t.true(pulledWhenCalledBack < LISTING_WINDOW / 2, `a callback ran after ${pulledWhenCalledBack} listings, not only once the window was full`);
  let taken = 0;
  for await (const listing of ahead.listings()) if (listing.ok) taken++;
  t.is(taken, 2 * LISTING_WINDOW);
});

test("the store's count is the total until the listing has ended; then the number listed", async (t) => {
  const { reader } = fakeReader();
  const ahead = new RunDataReadAhead(reader, listingsOf(3 * LISTING_WINDOW), 8, Promise.resolve(3 * LISTING_WINDOW + 5));
  let taken = 0;
  for await (const listing of ahead.listings()) {
    if (listing.ok) await ahead.runData(listing.run).catch(() => undefined);
    if (++taken === 10) t.is(ahead.total, 3 * LISTING_WINDOW + 5, 'the count, while most runs are not listed yet');
  }
  t.is(ahead.total, 3 * LISTING_WINDOW, 'the number listed, once the listing ended (the count was off)');
  const failing = new RunDataReadAhead(reader, listingsOf(10), 8, Promise.reject(new Error('no count')));
  for await (const listing of failing.listings()) if (listing.ok) await failing.runData(listing.run).catch(() => undefined);
  t.is(failing.total, 10, 'a count that failed only leaves the total to the listing');
});

test('a consumer that stops early stops the reading', async (t) => {
  const { reader, reads } = fakeReader();
  const ahead = new RunDataReadAhead(reader, listingsOf(1000), 16);
  let taken = 0;
  for await (const listing of ahead.listings()) {
    if (listing.ok && ++taken === 10) break;
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.true(reads.length <= 10 + 16 + 1, `${reads.length} runs read for 10 taken`);
});
