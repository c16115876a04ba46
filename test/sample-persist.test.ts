// Which samples get a history row: one a second per working run, one in five seconds per idle run, every telling one at once.
import test from 'ava';
import { newPersistedMarks, shouldPersist } from '../supervisor/sample-persist.js';
import type { Sample } from '../supervisor/types.js';

const MiB = 1024 * 1024;
const settings = { limits: { rss: 1024 * MiB, swap: 256 * MiB, disk_free_min: 1024 * MiB }, warn_at: 0.8 };

function sample(at: number, rss = 100 * MiB, extra: Partial<Sample> = {}): Sample {
  return { at, rss, swap: 0, cpu: 0, majflt_rate: 0, disk_free: 100_000 * MiB, procs: 1, ...extra };
}

test('an idle run stores its first sample, then the first one of each fifth wall-clock second', (t) => {
  const marks = newPersistedMarks();
  const kept = [];
  for (let at = 9_000; at < 21_000; at += 250) if (shouldPersist(marks, sample(at, 100 * MiB + (at % 7)), settings)) kept.push(at);
  t.deepEqual(kept, [9_000, 10_000, 15_000, 20_000]);
});

test('a run whose CPU time or progress moves stores the first sample of each wall-clock second', (t) => {
  const busy = newPersistedMarks();
  const keptBusy = [];
  for (let at = 10_000; at < 13_000; at += 250) if (shouldPersist(busy, sample(at, 100 * MiB, { cpu: (at - 10_000) / 1000 }), settings)) keptBusy.push(at);
  t.deepEqual(keptBusy, [10_000, 11_000, 12_000]);
  const progressing = newPersistedMarks();
  const keptProgress = [];
  for (let at = 10_000; at < 13_000; at += 250) if (shouldPersist(progressing, sample(at), settings, Math.floor(at / 500))) keptProgress.push(at);
  t.deepEqual(keptProgress, [10_000, 11_000, 12_000]);
  const stalled = newPersistedMarks();
  const keptStalled = [];
  for (let at = 10_000; at < 13_000; at += 250) if (shouldPersist(stalled, sample(at, 100 * MiB, { cpu: 2 }), settings, 7)) keptStalled.push(at);
  t.deepEqual(keptStalled, [10_000], 'CPU and progress standing still: idle');
});

test('a move of more than 5% (and 1 MiB), a change in process count, and a near-limit value are stored at once', (t) => {
  const marks = newPersistedMarks();
  t.true(shouldPersist(marks, sample(10_000), settings));
  t.false(shouldPersist(marks, sample(10_250, 104 * MiB), settings), '4% is not a move');
  t.true(shouldPersist(marks, sample(10_500, 106 * MiB), settings), '6% is');
  t.false(shouldPersist(marks, sample(10_600, 106 * MiB + 512 * 1024), settings));
  t.true(shouldPersist(marks, sample(10_700, 106 * MiB, { procs: 2 }), settings), 'a new process');
  t.true(shouldPersist(marks, sample(10_750, 106 * MiB, { procs: 2, swap: 40 * MiB }), settings), 'swap appeared');
  const tiny = newPersistedMarks();
  t.true(shouldPersist(tiny, sample(20_000, 40 * 1024), settings));
  t.false(shouldPersist(tiny, sample(20_250, 60 * 1024), settings), 'a 50% move of a few KiB is noise');
  const near = newPersistedMarks();
  t.true(shouldPersist(near, sample(30_000, 820 * MiB), settings));
  t.true(shouldPersist(near, sample(30_050, 821 * MiB), settings), 'past warn_at every sample is kept');
  t.true(shouldPersist(near, sample(30_100, 100 * MiB, { disk_free: 1200 * MiB }), settings), 'disk nearly at its floor');
  t.true(shouldPersist(near, sample(30_150, 100 * MiB, { disk_free: 1200 * MiB }), settings), 'and the next one too');
});

test('without warn_at the near-limit band starts at 80%', (t) => {
  const marks = newPersistedMarks();
  const noWarn = { ...settings, warn_at: 0 };
  t.true(shouldPersist(marks, sample(1_000, 700 * MiB), noWarn));
  t.false(shouldPersist(marks, sample(1_250, 700 * MiB), noWarn));
  t.true(shouldPersist(marks, sample(1_300, 830 * MiB), noWarn));
  t.true(shouldPersist(marks, sample(1_350, 831 * MiB), noWarn));
});
