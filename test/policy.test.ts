// The policy as a pure function: every rule, its limit, its warning and its edge, without processes.
import test from 'ava';
import { evaluatePolicy, sustainedFaultRate, type PolicyState } from '../supervisor/policy.js';
import type { KillReason, Sample } from '../supervisor/types.js';
import { makeJob } from './helpers/job.js';

const MiB = 1024 * 1024;
const T0 = 1_700_000_000_000;

function sample(at: number, fields: Partial<Sample> = {}): Sample {
  return { at, rss: 10 * MiB, swap: 0, cpu: 0, majflt_rate: 0, disk_free: 100 * 1024 * MiB, procs: 1, ...fields };
}

function state(fields: Partial<PolicyState> = {}): PolicyState {
  return { samples: [], lastMessageAt: null, progress: null, startedAt: T0, now: T0 + 1000, heartbeat: 'none', helloSeen: false, ...fields };
}

const base = makeJob({ warn_at: 0.8 });

test('no limits, no samples: ok', (t) => {
  t.deepEqual(evaluatePolicy(base, state()), { kind: 'ok' });
  t.deepEqual(evaluatePolicy(base, state({ samples: [sample(T0 + 500, { rss: 10_000 * MiB, swap: 10_000 * MiB })] })), { kind: 'ok' });
});

const thresholdCases: Array<{ name: string; limits: object; fields: Partial<Sample>; expect: 'ok' | 'warn' | 'kill'; reason?: KillReason; measured?: number; limit?: number }> = [
  { name: 'rss below warn', limits: { rss: 200 * MiB }, fields: { rss: 150 * MiB }, expect: 'ok' },
  { name: 'rss at warn_at', limits: { rss: 200 * MiB }, fields: { rss: 170 * MiB }, expect: 'warn', reason: 'memory', measured: 170 * MiB, limit: 200 * MiB },
  { name: 'rss exactly at limit is not over', limits: { rss: 200 * MiB }, fields: { rss: 200 * MiB }, expect: 'warn', reason: 'memory' },
  { name: 'rss over limit', limits: { rss: 200 * MiB }, fields: { rss: 201 * MiB }, expect: 'kill', reason: 'memory', measured: 201 * MiB, limit: 200 * MiB },
  { name: 'rss limit 0 means unlimited', limits: { rss: 0 }, fields: { rss: 9999 * MiB }, expect: 'ok' },
  { name: 'swap over limit', limits: { swap: 64 * MiB }, fields: { swap: 65 * MiB }, expect: 'kill', reason: 'swap', measured: 65 * MiB, limit: 64 * MiB },
  { name: 'swap near limit warns', limits: { swap: 64 * MiB }, fields: { swap: 60 * MiB }, expect: 'warn', reason: 'swap' },
  { name: 'disk plenty', limits: { disk_free_min: 1024 * MiB }, fields: { disk_free: 5000 * MiB }, expect: 'ok' },
  { name: 'disk below minimum', limits: { disk_free_min: 1024 * MiB }, fields: { disk_free: 1000 * MiB }, expect: 'kill', reason: 'disk', measured: 1000 * MiB, limit: 1024 * MiB },
  { name: 'disk within 1/warn_at of minimum warns', limits: { disk_free_min: 1024 * MiB }, fields: { disk_free: 1200 * MiB }, expect: 'warn', reason: 'disk' },
  { name: 'disk unknown (no watched path) is ignored', limits: { disk_free_min: 1024 * MiB }, fields: { disk_free: Number.POSITIVE_INFINITY }, expect: 'ok' },
  { name: 'memory wins over swap when both are over', limits: { rss: 100 * MiB, swap: 10 * MiB }, fields: { rss: 200 * MiB, swap: 20 * MiB }, expect: 'kill', reason: 'memory' },
  { name: 'a kill wins over a warning', limits: { rss: 100 * MiB, swap: 10 * MiB }, fields: { rss: 90 * MiB, swap: 20 * MiB }, expect: 'kill', reason: 'swap' },
];

for (const c of thresholdCases) {
  test(`thresholds: ${c.name}`, (t) => {
    const job = makeJob({ limits: c.limits });
    const decision = evaluatePolicy(job, state({ samples: [sample(T0 + 900, c.fields)] }));
    t.is(decision.kind, c.expect);
    if (decision.kind !== 'ok') {
      t.is(decision.reason, c.reason!);
      if (c.measured !== undefined) t.is(decision.measured, c.measured);
      if (c.limit !== undefined) t.is(decision.limit, c.limit);
    }
    if (decision.kind === 'kill') t.true(decision.detail.length > 10);
  });
}

test('the latest sample is the one judged', (t) => {
  const job = makeJob({ limits: { rss: 100 * MiB } });
  t.is(evaluatePolicy(job, state({ samples: [sample(T0 + 100, { rss: 500 * MiB }), sample(T0 + 350, { rss: 10 * MiB })] })).kind, 'ok');
  t.is(evaluatePolicy(job, state({ samples: [sample(T0 + 100, { rss: 10 * MiB }), sample(T0 + 350, { rss: 500 * MiB })] })).kind, 'kill');
});

test('a warning is given once per kind; the next kind still warns', (t) => {
  const job = makeJob({ limits: { rss: 100 * MiB, swap: 100 * MiB } });
  const samples = [sample(T0 + 900, { rss: 90 * MiB, swap: 90 * MiB })];
  const first = evaluatePolicy(job, state({ samples }));
  t.like(first, { kind: 'warn', reason: 'memory' });
  const second = evaluatePolicy(job, state({ samples, warned: new Set<KillReason>(['memory']) }));
  t.like(second, { kind: 'warn', reason: 'swap' });
  t.deepEqual(evaluatePolicy(job, state({ samples, warned: new Set<KillReason>(['memory', 'swap']) })), { kind: 'ok' });
  // Already warned never suppresses the kill.
  t.like(evaluatePolicy(job, state({ samples: [sample(T0 + 900, { rss: 101 * MiB })], warned: new Set<KillReason>(['memory']) })), { kind: 'kill', reason: 'memory' });
});

test('warn_at of 0 or 1 disables warnings', (t) => {
  for (const warn_at of [0, 1]) {
    const job = makeJob({ warn_at, limits: { rss: 100 * MiB } });
    t.deepEqual(evaluatePolicy(job, state({ samples: [sample(T0, { rss: 99 * MiB })] })), { kind: 'ok' });
  }
});

test('timeout: only when max_runtime > 0, measured is the runtime', (t) => {
  t.deepEqual(evaluatePolicy(makeJob({ max_runtime: 0 }), state({ now: T0 + 10 ** 9 })), { kind: 'ok' });
  t.like(evaluatePolicy(makeJob({ max_runtime: 5000 }), state({ now: T0 + 5001 })), { kind: 'kill', reason: 'timeout', measured: 5001, limit: 5000 });
  t.like(evaluatePolicy(makeJob({ max_runtime: 5000 }), state({ now: T0 + 4500 })), { kind: 'warn', reason: 'timeout' });
  t.deepEqual(evaluatePolicy(makeJob({ max_runtime: 5000 }), state({ now: T0 + 5000 })).kind, 'warn');
});

test('heartbeat: ipc jobs only, counted from spawn until a message arrives', (t) => {
  const job = makeJob({ heartbeat_timeout: 1000, warn_at: 0.8 });
  t.like(evaluatePolicy(job, state({ heartbeat: 'ipc', now: T0 + 1500 })), { kind: 'kill', reason: 'heartbeat', measured: 1500, limit: 1000 });
  t.regex((evaluatePolicy(job, state({ heartbeat: 'ipc', now: T0 + 1500 })) as { detail: string }).detail, /no hello/);
  t.deepEqual(evaluatePolicy(job, state({ heartbeat: 'stdout', now: T0 + 1500 })), { kind: 'ok' });
  t.deepEqual(evaluatePolicy(job, state({ heartbeat: 'none', now: T0 + 1500 })), { kind: 'ok' });
});

test('heartbeat: counted from the last message after hello', (t) => {
  const job = makeJob({ heartbeat_timeout: 1000 });
  const alive = state({ heartbeat: 'ipc', helloSeen: true, lastMessageAt: T0 + 5000, now: T0 + 5500 });
  t.deepEqual(evaluatePolicy(job, alive), { kind: 'ok' });
  const warned = state({ heartbeat: 'ipc', helloSeen: true, lastMessageAt: T0 + 5000, now: T0 + 5900 });
  t.like(evaluatePolicy(job, warned), { kind: 'warn', reason: 'heartbeat', measured: 900 });
  const dead = state({ heartbeat: 'ipc', helloSeen: true, lastMessageAt: T0 + 5000, now: T0 + 6001 });
  const decision = evaluatePolicy(job, dead);
  t.like(decision, { kind: 'kill', reason: 'heartbeat', measured: 1001, limit: 1000 });
  t.regex((decision as { detail: string }).detail, /no message for/);
  t.deepEqual(evaluatePolicy(makeJob({ heartbeat_timeout: 0 }), dead), { kind: 'ok' }, 'heartbeat_timeout 0 disables the rule');
});

test('stalled: ipc counts from spawn until progress, then from the last advance', (t) => {
  const job = makeJob({ stall_timeout: 10_000, heartbeat_timeout: 0 });
  t.like(evaluatePolicy(job, state({ heartbeat: 'ipc', now: T0 + 10_001 })), { kind: 'kill', reason: 'stalled' });
  const progress = { done: 7, total: 10, unit: 'runs', advanced_at: T0 + 8000 };
  t.like(evaluatePolicy(job, state({ heartbeat: 'ipc', progress, now: T0 + 15_000 })), { kind: 'ok' });
  const stuck = evaluatePolicy(job, state({ heartbeat: 'ipc', progress, now: T0 + 18_001 }));
  t.like(stuck, { kind: 'kill', reason: 'stalled', measured: 10_001, limit: 10_000 });
  t.regex((stuck as { detail: string }).detail, /stuck at 7\/10 runs/);
});

test('stalled: stdout jobs count from spawn; none jobs only once progress was seen', (t) => {
  const job = makeJob({ stall_timeout: 1000 });
  t.like(evaluatePolicy(job, state({ heartbeat: 'stdout', now: T0 + 1001 })), { kind: 'kill', reason: 'stalled' });
  t.deepEqual(evaluatePolicy(job, state({ heartbeat: 'none', now: T0 + 100_000 })), { kind: 'ok' });
  const progress = { done: 1, unit: 'items', advanced_at: T0 + 50_000 };
  t.like(evaluatePolicy(job, state({ heartbeat: 'none', progress, now: T0 + 51_001 })), { kind: 'kill', reason: 'stalled' });
  t.like(evaluatePolicy(job, state({ heartbeat: 'none', progress, now: T0 + 50_900 })), { kind: 'warn', reason: 'stalled' });
  t.deepEqual(evaluatePolicy(makeJob({ stall_timeout: 0 }), state({ heartbeat: 'stdout', now: T0 + 10 ** 9 })), { kind: 'ok' });
});

test('resource kills come before clock kills', (t) => {
  const job = makeJob({ limits: { rss: MiB }, heartbeat_timeout: 100, stall_timeout: 100, max_runtime: 100 });
  t.like(evaluatePolicy(job, state({ heartbeat: 'ipc', samples: [sample(T0 + 900, { rss: 2 * MiB })] })), { kind: 'kill', reason: 'memory' });
  t.like(evaluatePolicy(job, state({ heartbeat: 'ipc', samples: [sample(T0 + 900, { rss: MiB / 2 })] })), { kind: 'kill', reason: 'timeout' });
});

function faultSeries(rates: number[], step = 250, end = T0 + 10_000): Sample[] {
  return rates.map((rate, i) => sample(end - (rates.length - 1 - i) * step, { majflt_rate: rate }));
}

test('thrash: sustained major faults over the whole window kill', (t) => {
  const job = makeJob({ limits: { majflt_rate: 500 }, thrash_window: 2000 });
  const samples = faultSeries(Array(12).fill(900)); // 2750 ms of history, all above
  const decision = evaluatePolicy(job, state({ samples, now: T0 + 10_000 }));
  t.like(decision, { kind: 'kill', reason: 'thrash', measured: 900, limit: 500 });
  t.regex((decision as { detail: string }).detail, /major page faults/);
});

test('thrash: one dip inside the window prevents the kill; the measured value is the lowest rate', (t) => {
  const job = makeJob({ limits: { majflt_rate: 500 }, thrash_window: 2000 });
  const rates = Array(12).fill(900);
  rates[9] = 100;
  t.not(evaluatePolicy(job, state({ samples: faultSeries(rates), now: T0 + 10_000 })).kind, 'kill');
  t.is(sustainedFaultRate(faultSeries(rates), 2000, T0 + 10_000), 100);
  // A dip before the window no longer matters.
  const old = Array(12).fill(900);
  old[0] = 100;
  t.like(evaluatePolicy(job, state({ samples: faultSeries(old), now: T0 + 10_000 })), { kind: 'kill', reason: 'thrash' });
});

test('thrash: history shorter than the window never kills', (t) => {
  const job = makeJob({ limits: { majflt_rate: 500 }, thrash_window: 5000 });
  t.deepEqual(evaluatePolicy(job, state({ samples: faultSeries(Array(8).fill(10_000)), now: T0 + 10_000 })), { kind: 'ok' });
  t.is(sustainedFaultRate(faultSeries(Array(8).fill(10_000)), 5000, T0 + 10_000), null);
  t.is(sustainedFaultRate([], 5000, T0), null);
  t.is(sustainedFaultRate(faultSeries([1, 2, 3]), 0, T0 + 10_000), null);
});

test('thrash: sustained above warn_at × limit warns', (t) => {
  const job = makeJob({ limits: { majflt_rate: 1000 }, thrash_window: 1000, warn_at: 0.8 });
  t.like(evaluatePolicy(job, state({ samples: faultSeries(Array(8).fill(850)), now: T0 + 10_000 })), { kind: 'warn', reason: 'thrash', measured: 850 });
});
