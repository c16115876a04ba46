// The early start's run listing (extractors/mlflow/lookahead.ts startIteration, used by the REST reader's
// startSelection): it lists before its consumer arrives, but keeps at most its buffer's worth of items,
// so a large store is listed at the consumer's pace instead of into memory.
import test from 'ava';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { startIteration } from '../extractors/mlflow/lookahead.js';

/** A source of `count` numbers that counts how many were pulled and whether it was closed. */
function countingSource(count: number): { source: AsyncIterable<number>; pulled: () => number; closed: () => boolean } {
  let pulled = 0;
  let closed = false;
  async function* numbers(): AsyncGenerator<number> {
    try {
      for (let index = 0; index < count; index++) {
        await nextTurn();
        pulled++;
        yield index;
      }
    } finally {
      closed = true;
    }
  }
  return { source: numbers(), pulled: () => pulled, closed: () => closed };
}

async function settle(turns = 50): Promise<void> {
  for (let turn = 0; turn < turns; turn++) await nextTurn();
}

test('the started listing stops pulling at its buffer size and resumes as items are taken', async (t) => {
  const { source, pulled } = countingSource(5000);
  const started = startIteration(source, 10);
  await settle();
  t.is(pulled(), 10, 'nothing is taken yet: the buffer is full and the source waits');

  const iterator = started.items[Symbol.asyncIterator]();
  for (let index = 0; index < 3; index++) t.deepEqual(await iterator.next(), { value: index, done: false });
  await settle();
  t.true(pulled() <= 13, `three taken, at most three more pulled (pulled ${pulled()})`);

  const rest: number[] = [];
  for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) rest.push(next.value);
  t.is(rest.length, 4997);
  t.deepEqual(rest.slice(0, 3), [3, 4, 5]);
  t.is(rest.at(-1), 4999);
  t.is(pulled(), 5000);
});

test('stopping a started listing that waits on its full buffer closes the source', async (t) => {
  const { source, pulled, closed } = countingSource(1000);
  const started = startIteration(source, 5);
  await settle();
  t.is(pulled(), 5);
  started.stop();
  await settle();
  t.true(closed(), 'the source was closed');
  t.is(pulled(), 5, 'nothing more was pulled after the stop');
});

test('a source that fails after the buffer filled reports its error to the consumer after the items before it', async (t) => {
  async function* failing(): AsyncGenerator<number> {
    for (let index = 0; index < 8; index++) yield index;
    throw new Error('the server answered 500');
  }
  const started = startIteration(failing(), 4);
  await settle();
  const seen: number[] = [];
  const error = await t.throwsAsync(async () => {
    for await (const item of started.items) seen.push(item);
  });
  t.is(error?.message, 'the server answered 500');
  t.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7]);
});

test('a buffer size that is not a positive integer is refused', (t) => {
  const { source } = countingSource(1);
  t.throws(() => startIteration(source, 0), { instanceOf: RangeError, message: /positive integer/ });
  t.throws(() => startIteration(source, Number.POSITIVE_INFINITY), { instanceOf: RangeError });
});
