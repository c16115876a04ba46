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
  for (let i = 0; i < samples.length; i++) {
    const sample = samples[i]!;
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

// The rules in order of urgency (memory first: it grows fastest). Kills win over warnings.
const ruleOrder: readonly KillReason[] = ['memory', 'swap', 'thrash', 'disk', 'timeout', 'heartbeat', 'stalled'];

/** How far one rule's measure is; written in place (the policy runs for every run at every tick). */
interface Measure {
  measured: number;
  limit: number;
  /** True when a smaller measure is worse (free disk). */
  lowerIsWorse: boolean;
}

// One scratch record for the whole process: evaluatePolicy is synchronous and never re-entered, so a call
// allocates nothing unless it returns a warning or a kill.
const scratch: Measure = { measured: 0, limit: 0, lowerIsWorse: false };

function latestOf(state: PolicyState): Sample | null {
  return state.samples.length > 0 ? state.samples[state.samples.length - 1]! : null;
}

/** Fills `into` with the rule's measure and limit; false when the rule does not apply now. */
function measure(reason: KillReason, settings: PolicySettings, state: PolicyState, latest: Sample | null, into: Measure): boolean {
  const { limits } = settings;
  into.lowerIsWorse = false;
  switch (reason) {
    case 'memory':
      if (!latest || !positive(limits.rss)) return false;
      into.measured = latest.rss;
      into.limit = limits.rss;
      return true;
    case 'swap':
      if (!latest || !positive(limits.swap)) return false;
      into.measured = latest.swap;
      into.limit = limits.swap;
      return true;
    case 'thrash': {
      if (!positive(limits.majflt_rate) || settings.thrash_window <= 0) return false;
      const rate = sustainedFaultRate(state.samples, settings.thrash_window, state.now);
      if (rate === null) return false;
      into.measured = rate;
      into.limit = limits.majflt_rate;
      return true;
    }
    case 'disk':
      if (!latest || !positive(limits.disk_free_min) || !Number.isFinite(latest.disk_free)) return false;
      into.measured = latest.disk_free;
      into.limit = limits.disk_free_min;
      into.lowerIsWorse = true;
      return true;
    case 'timeout':
      if (!positive(settings.max_runtime)) return false;
      into.measured = state.now - state.startedAt;
      into.limit = settings.max_runtime;
      return true;
    case 'heartbeat':
      if (state.heartbeat !== 'ipc' || !positive(settings.heartbeat_timeout)) return false;
      // From spawn until hello, then from the last message (hello is a message).
      into.measured = state.now - (state.lastMessageAt ?? state.startedAt);
      into.limit = settings.heartbeat_timeout;
      return true;
    case 'stalled': {
      const stallFrom = stallReference(state);
      if (stallFrom === null || !positive(settings.stall_timeout)) return false;
      into.measured = state.now - stallFrom;
      into.limit = settings.stall_timeout;
      return true;
    }
    default:
      return false;
  }
}

/** The kill detail of a rule that fired (built only then: string formatting is the expensive part). */
function describe(reason: KillReason, settings: PolicySettings, state: PolicyState, latest: Sample | null, measured: number, limit: number): string {
  switch (reason) {
    case 'memory':
      return `tree RSS ${formatBytes(measured)} exceeds the limit of ${formatBytes(limit)} (${latest?.procs ?? 0} processes)`;
    case 'swap':
      return `tree swap ${formatBytes(measured)} exceeds the limit of ${formatBytes(limit)}`;
    case 'thrash':
      return `major page faults stayed above ${limit}/s for ${formatDuration(settings.thrash_window)} (lowest ${measured.toFixed(0)}/s): the working set is being swapped in and out`;
    case 'disk':
      return `free disk space ${formatBytes(measured)} is below the minimum of ${formatBytes(limit)}`;
    case 'timeout':
      return `ran for ${formatDuration(measured)}, longer than max_runtime ${formatDuration(limit)}`;
    case 'heartbeat':
      return state.helloSeen
        ? `no message for ${formatDuration(measured)} (heartbeat_timeout ${formatDuration(limit)})`
        : `no hello within ${formatDuration(measured)} of starting (heartbeat_timeout ${formatDuration(limit)})`;
    case 'stalled': {
      const progress = state.progress;
      const at = progress ? `progress stuck at ${progress.done}${progress.total !== undefined ? `/${progress.total}` : ''} ${progress.unit}` : 'no progress reported';
      return `${at} for ${formatDuration(measured)} (stall_timeout ${formatDuration(limit)})`;
    }
    default:
      return `${reason}: ${measured} against a limit of ${limit}`;
  }
}

function exceeds(check: Measure, fraction: number): boolean {
  return check.lowerIsWorse ? check.measured * fraction < check.limit : check.measured > check.limit * fraction;
}

const okDecision: PolicyDecision = Object.freeze({ kind: 'ok' });

// Kills win over warnings; rules are ordered by urgency (memory first: it grows fastest). Called for every
// live run at every tick, so the common case (nothing to do) creates no object at all.
/** Decides what to do with a run now: nothing, a one-time warning, or a kill with the measured value and limit. */
export function evaluatePolicy(settings: PolicySettings, state: PolicyState): PolicyDecision {
  const latest = latestOf(state);
  for (let i = 0; i < ruleOrder.length; i++) {
    const reason = ruleOrder[i]!;
    if (!measure(reason, settings, state, latest, scratch) || !exceeds(scratch, 1)) continue;
    const { measured, limit } = scratch;
    return { kind: 'kill', reason, measured, limit, detail: describe(reason, settings, state, latest, measured, limit) };
  }
  const warnAt = settings.warn_at;
  if (warnAt > 0 && warnAt < 1) {
    for (let i = 0; i < ruleOrder.length; i++) {
      const reason = ruleOrder[i]!;
      if (state.warned?.has(reason)) continue;
      if (measure(reason, settings, state, latest, scratch) && exceeds(scratch, warnAt)) {
        return { kind: 'warn', reason, measured: scratch.measured, limit: scratch.limit };
      }
    }
  }
  return okDecision;
}
