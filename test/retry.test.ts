import test from 'ava';
import { retryDelay, retryReasonFor } from '../supervisor/retry.js';
import type { RetryPolicy } from '../supervisor/types.js';

const policy: RetryPolicy = { max: 4, backoff: 1000, factor: 2, max_backoff: 5000, jitter: 0, on: ['crash', 'heartbeat', 'stalled', 'interrupted'] };
const mid = () => 0.5; // jitter term is zero at 0.5

test('backoff grows by factor per attempt and is capped by max_backoff', (t) => {
  t.deepEqual([1, 2, 3, 4].map((n) => retryDelay(policy, 'crash', n, mid)), [1000, 2000, 4000, 5000]);
});

test('no retry once attempts exceed max', (t) => {
  t.is(retryDelay(policy, 'crash', 5, mid), null);
  t.is(retryDelay({ ...policy, max: 0 }, 'crash', 1, mid), null);
});

test('no retry for a reason the policy does not name', (t) => {
  t.is(retryDelay(policy, 'memory', 1, mid), null);
  t.is(retryDelay(policy, 'swap', 1, mid), null);
  t.is(retryDelay({ ...policy, on: [...policy.on, 'memory'] }, 'memory', 1, mid), 1000);
});

test('jitter spreads the delay by ± the fraction', (t) => {
  const jittery = { ...policy, jitter: 0.2 };
  t.is(retryDelay(jittery, 'crash', 1, () => 0), 800);
  t.is(retryDelay(jittery, 'crash', 1, () => 1), 1200);
  t.is(retryDelay(jittery, 'crash', 4, () => 1), 6000); // jitter applies around the capped value
  for (let i = 0; i < 200; i += 1) {
    const delay = retryDelay(jittery, 'crash', 2)!;
    t.true(delay >= 1600 && delay <= 2400, `delay ${delay} outside 2000 ± 20%`);
  }
});

test('invalid attempt counts never retry', (t) => {
  t.is(retryDelay(policy, 'crash', 0, mid), null);
  t.is(retryDelay(policy, 'crash', Number.NaN, mid), null);
});

test('how a run ended maps to a retry reason', (t) => {
  t.is(retryReasonFor('failed', 'crash'), 'crash');
  t.is(retryReasonFor('interrupted', 'daemon_crash'), 'interrupted');
  t.is(retryReasonFor('killed', 'stalled'), 'stalled');
  t.is(retryReasonFor('killed', 'memory'), 'memory');
  t.is(retryReasonFor('killed', 'operator'), null);
  t.is(retryReasonFor('failed', 'validation'), null);
  t.is(retryReasonFor('succeeded', null), null);
});
