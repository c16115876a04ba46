// The metric-history extractor requests the next keys' first pages while it writes the current key:
// batches must still come in key order, no source may run more than its first page ahead, and an error
// of a key surfaces when that key's turn comes (after the keys before it were written).
import test from 'ava';
import { inOrderWithLookahead } from '../extractors/mlflow/lookahead.js';

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

test('batches come in source order with at most the first page of the next sources requested early', async (t) => {
  const pulled: string[] = [];
  const source = (name: string, pages: number, failAt?: number) => async function* () {
    for (let page = 0; page < pages; page++) {
      pulled.push(`${name}${page}`);
      await tick();
      if (page === failAt) throw new Error(`${name} page ${page} failed`);
      yield `${name}${page}`;
    }
  };
  const seen: string[] = [];
  for await (const batch of inOrderWithLookahead([source('a', 3), source('b', 2), source('c', 2), source('d', 1)].map((f) => () => f()), 1)) {
    seen.push(batch);
    // When a0 is written, only b's first page may have been requested ahead (lookahead 1).
    if (batch === 'a0') t.deepEqual(pulled.slice().sort(), ['a0', 'b0']);
  }
  t.deepEqual(seen, ['a0', 'a1', 'a2', 'b0', 'b1', 'c0', 'c1', 'd0']);

  const written: string[] = [];
  const failing = [source('x', 2), source('y', 2, 1), source('z', 1)].map((f) => () => f());
  await t.throwsAsync(async () => {
    for await (const batch of inOrderWithLookahead(failing, 2)) written.push(batch);
  }, { message: 'y page 1 failed' });
  t.deepEqual(written, ['x0', 'x1', 'y0']);
});
