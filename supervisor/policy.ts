// The policy: a pure function from a run's limits, recent samples and clocks to a decision. No I/O and
// no clock reads (`now` is an input), so every rule is tested without a single process.
import { formatBytes, formatDuration } from './units.js';
import type { HeartbeatMode, JobSettings, KillReason, Progress, Sample } from './types.js';

/** Everything the policy looks at. Times are ms since epoch. */
export interface PolicyState {
  /** Recent samples, oldest first; must reach back at least `thrash_window` for the thrash rule to fire. */
  samples: readonly Sample[];
  /** Last valid IPC message; null when none came yet. */
  lastMessageAt: number | null;
  progress: Progress | null;
  startedAt: number;
  now: number;
  heartbeat: HeartbeatMode;
  helloSeen: boolean;
  /** Kinds already warned about in this run (a warning is emitted once per kind). */
  warned?: ReadonlySet<KillReason>;
}

export type PolicyDecision =
  | { kind: 'ok' }
  | { kind: 'warn'; reason: KillReason; measured: number; limit: number }
  | { kind: 'kill'; reason: KillReason; measured: number; limit: number; detail: string };

type PolicySettings = Pick<JobSettings, 'limits' | 'heartbeat_timeout' | 'stall_timeout' | 'max_runtime' | 'warn_at' | 'thrash_window'>;

interface Check {
  reason: KillReason;
  /** How far the measure is; compared against `limit` (and `warn_at × limit`). */
  measured: number;
  limit: number;
  /** True when a smaller measure is worse (free disk). */
  lowerIsWorse?: boolean;
  describe: () => string;
}

function positive(value: number | undefined): value is number {
  return value !== undefined && Number.isFinite(value) && value > 0;
}

// The thrash rule needs "above the threshold for the whole window", not one spike: every sample
// inside the window must exceed it, and the history must actually cover the window.
/** The lowest major-fault rate over the last `window` ms, or null when the samples do not cover it. */
export function sustainedFaultRate(samples: readonly Sample[], window: number, now: number): number | null {
  if (window <= 0 || samples.length === 0) return null;
  const from = now - window;
  if (samples[0]!.at > from) return null;
  let lowest = Number.POSITIVE_INFINITY;
  let inside = 0;
  for (const sample of samples) {
    if (sample.at > from && sample.at <= now) {
      lowest = Math.min(lowest, sample.majflt_rate);
      inside++;
    }
  }
  return inside >= 2 ? lowest : null;
}

function stallReference(state: PolicyState): number | null {
  if (state.progress) return state.progress.advanced_at;
  // 'none' jobs promised nothing: the stall clock starts only once progress was seen.
  if (state.heartbeat === 'none') return null;
  return state.startedAt;
}

function checks(settings: PolicySettings, state: PolicyState): Check[] {
  const list: Check[] = [];
  const latest = state.samples.length > 0 ? state.samples[state.samples.length - 1]! : null;
  const { limits } = settings;
  if (latest && positive(limits.rss)) {
    const limit = limits.rss;
    list.push({ reason: 'memory', measured: latest.rss, limit, describe: () => `tree RSS ${formatBytes(latest.rss)} exceeds the limit of ${formatBytes(limit)} (${latest.procs} processes)` });
  }
  if (latest && positive(limits.swap)) {
    const limit = limits.swap;
    list.push({ reason: 'swap', measured: latest.swap, limit, describe: () => `tree swap ${formatBytes(latest.swap)} exceeds the limit of ${formatBytes(limit)}` });
  }
  if (positive(limits.majflt_rate) && settings.thrash_window > 0) {
    const rate = sustainedFaultRate(state.samples, settings.thrash_window, state.now);
    if (rate !== null) {
      const limit = limits.majflt_rate;
      list.push({ reason: 'thrash', measured: rate, limit, describe: () => `major page faults stayed above ${limit}/s for ${formatDuration(settings.thrash_window)} (lowest ${rate.toFixed(0)}/s): the working set is being swapped in and out` });
    }
  }
  if (latest && positive(limits.disk_free_min) && Number.isFinite(latest.disk_free)) {
    const limit = limits.disk_free_min;
    list.push({ reason: 'disk', measured: latest.disk_free, limit, lowerIsWorse: true, describe: () => `free disk space ${formatBytes(latest.disk_free)} is below the minimum of ${formatBytes(limit)}` });
  }
  if (positive(settings.max_runtime)) {
    const limit = settings.max_runtime;
    const runtime = state.now - state.startedAt;
    list.push({ reason: 'timeout', measured: runtime, limit, describe: () => `ran for ${formatDuration(runtime)}, longer than max_runtime ${formatDuration(limit)}` });
  }
  if (state.heartbeat === 'ipc' && positive(settings.heartbeat_timeout)) {
    const limit = settings.heartbeat_timeout;
    // From spawn until hello, then from the last message (hello is a message).
    const silent = state.now - (state.lastMessageAt ?? state.startedAt);
    list.push({
      reason: 'heartbeat',
      measured: silent,
      limit,
      describe: () => (state.helloSeen ? `no message for ${formatDuration(silent)} (heartbeat_timeout ${formatDuration(limit)})` : `no hello within ${formatDuration(silent)} of starting (heartbeat_timeout ${formatDuration(limit)})`),
    });
  }
  const stallFrom = stallReference(state);
  if (stallFrom !== null && positive(settings.stall_timeout)) {
    const limit = settings.stall_timeout;
    const still = state.now - stallFrom;
    const at = state.progress ? `progress stuck at ${state.progress.done}${state.progress.total !== undefined ? `/${state.progress.total}` : ''} ${state.progress.unit}` : 'no progress reported';
    list.push({ reason: 'stalled', measured: still, limit, describe: () => `${at} for ${formatDuration(still)} (stall_timeout ${formatDuration(limit)})` });
  }
  return list;
}

function exceeds(check: Check, fraction: number): boolean {
  return check.lowerIsWorse ? check.measured * fraction < check.limit : check.measured > check.limit * fraction;
}

// Kills win over warnings; checks are ordered by urgency (memory first: it grows fastest).
/** Decides what to do with a run now: nothing, a one-time warning, or a kill with the measured value and limit. */
export function evaluatePolicy(settings: PolicySettings, state: PolicyState): PolicyDecision {
  const all = checks(settings, state);
  for (const check of all) {
    if (exceeds(check, 1)) return { kind: 'kill', reason: check.reason, measured: check.measured, limit: check.limit, detail: check.describe() };
  }
  const warnAt = settings.warn_at;
  if (warnAt > 0 && warnAt < 1) {
    for (const check of all) {
      if (state.warned?.has(check.reason)) continue;
      if (exceeds(check, warnAt)) return { kind: 'warn', reason: check.reason, measured: check.measured, limit: check.limit };
    }
  }
  return { kind: 'ok' };
}
