// Which samples of a run are worth a row in history.sqlite. The policy sees every sample in memory; the
// history only needs enough of them to draw the run and to explain a kill. Writing all of them (4 a
// second per run) was the largest part of the daemon's idle CPU, so a working run stores about one a
// second, a run where nothing moves one every five, and every sample that says something new is still
// stored at once.
import type { JobSettings, Sample } from './types.js';

/** A working run (its CPU time or progress moved) stores one sample per this many ms (on the wall-clock second, so all runs share a write). */
export const PERSIST_INTERVAL_MS = 1000;
/** A run where nothing moved stores one sample per this many ms (on a wall-clock grid too). */
export const PERSIST_QUIET_INTERVAL_MS = 5000;
/** CPU time (seconds) a run must use since its last stored sample to count as working: one clock tick. */
export const PERSIST_CPU_MOVE_SECONDS = 0.01;
/** A move of RSS, swap or free disk by more than this fraction of the last stored value is stored at once. */
export const PERSIST_CHANGE_FRACTION = 0.05;
/** Changes smaller than this many bytes never count as a move (a tiny process going 40 → 44 KiB). */
export const PERSIST_CHANGE_FLOOR_BYTES = 1024 * 1024;
/** Near-limit fraction used when the job has no `warn_at` (0 or ≥ 1). */
export const PERSIST_NEAR_LIMIT_FALLBACK = 0.8;

/** What the last stored sample of a run said; null before the first. Updated in place by `shouldPersist`. */
export interface PersistedMarks {
  stored: boolean;
  at: number;
  rss: number;
  swap: number;
  disk_free: number;
  procs: number;
  cpu: number;
  progressDone: number | null;
}

/** A fresh record for a run that has stored nothing yet. */
export function newPersistedMarks(): PersistedMarks {
  return { stored: false, at: 0, rss: 0, swap: 0, disk_free: 0, procs: 0, cpu: 0, progressDone: null };
}

function moved(value: number, stored: number): boolean {
  if (value === stored) return false;
  if (!Number.isFinite(value) || !Number.isFinite(stored)) return true;
  const delta = Math.abs(value - stored);
  return delta > PERSIST_CHANGE_FLOOR_BYTES && delta > PERSIST_CHANGE_FRACTION * Math.abs(stored);
}

function nearLimit(sample: Sample, settings: Pick<JobSettings, 'limits' | 'warn_at'>): boolean {
  const fraction = settings.warn_at > 0 && settings.warn_at < 1 ? settings.warn_at : PERSIST_NEAR_LIMIT_FALLBACK;
  const { rss, swap, disk_free_min } = settings.limits;
  return (
    (rss !== undefined && rss > 0 && sample.rss >= fraction * rss) ||
    (swap !== undefined && swap > 0 && sample.swap >= fraction * swap) ||
    (disk_free_min !== undefined && disk_free_min > 0 && sample.disk_free * fraction <= disk_free_min)
  );
}

// Stored: the run's first sample; the first sample of each wall-clock second while the run works (CPU time
// or progress moved since the last stored sample), of each fifth second while it does not; a sample whose RSS, swap or
// free disk moved by more than 5% (and 1 MiB) since the last stored one; a change in the process count; and
// every sample while a measure is at or past the job's warn_at fraction of its limit (the approach to a kill
// is drawn at full resolution). The run's last sample is stored by the caller at the end of the run.
/** Whether `sample` gets a row in history; when true, `marks` is updated to it. */
export function shouldPersist(
  marks: PersistedMarks,
  sample: Sample,
  settings: Pick<JobSettings, 'limits' | 'warn_at'>,
  progressDone: number | null = null,
): boolean {
  const working = sample.cpu - marks.cpu >= PERSIST_CPU_MOVE_SECONDS || progressDone !== marks.progressDone;
  const interval = working ? PERSIST_INTERVAL_MS : PERSIST_QUIET_INTERVAL_MS;
  const keep =
    !marks.stored ||
    Math.floor(sample.at / interval) !== Math.floor(marks.at / interval) ||
    sample.procs !== marks.procs ||
    moved(sample.rss, marks.rss) ||
    moved(sample.swap, marks.swap) ||
    moved(sample.disk_free, marks.disk_free) ||
    nearLimit(sample, settings);
  if (keep) {
    marks.stored = true;
    marks.at = sample.at;
    marks.rss = sample.rss;
    marks.swap = sample.swap;
    marks.disk_free = sample.disk_free;
    marks.procs = sample.procs;
    marks.cpu = sample.cpu;
    marks.progressDone = progressDone;
  }
  return keep;
}
