// Job dependencies (`after:`) as cycles: which jobs a cycle contains, in which order they may run, and —
// from the runs the cycle has so far — which jobs to queue now, which to skip because a dependency failed,
// and which still wait. Pure (no I/O, no clock), so every rule is tested without processes; the daemon
// persists cycles and runs (history.ts) and acts on the plan.
import type { RunState } from './types.js';
import { terminalStates } from './types.js';

/** What starts a cycle: `--once`, the daemon's autostart, a schedule tick, `duckvisorctl start --with-deps`. */
export type CycleKind = 'once' | 'autostart' | 'schedule' | 'with-deps';

/** The part of a job the dependency graph needs. */
export interface DependencyNode {
  after: readonly string[];
}

/** The part of a run the planner needs (a history RunRow fits). */
export interface CycleRun {
  id: string;
  job: string;
  state: RunState;
  reason: string | null;
  detail: string | null;
}

/** One step of a cycle: what to queue and skip now, who waits for whom, and whether the cycle is over. */
export interface CyclePlan {
  /** Jobs whose dependencies all succeeded in this cycle and that have no run in it yet. */
  queue: Array<{ job: string; detail: string }>;
  /** Jobs that can no longer run in this cycle because a dependency failed, was killed or was skipped. */
  skip: Array<{ job: string; dependency: string; detail: string }>;
  /** Jobs without a run yet → the dependencies that have not succeeded yet. */
  waiting: Map<string, string[]>;
  /** True when every member has a final run (after applying `skip`) and none is queued or live. */
  finished: boolean;
  /** True when finished and every member's final run succeeded. */
  ok: boolean;
}

// Why: a cycle must contain what its jobs need, or a dependent would wait for a job that never runs.
/** `roots` plus everything they depend on, transitively. Unknown names are ignored (config validates them). */
export function withDependencies(jobs: ReadonlyMap<string, DependencyNode>, roots: Iterable<string>): Set<string> {
  const members = new Set<string>();
  const visit = (name: string) => {
    if (members.has(name) || !jobs.has(name)) return;
    members.add(name);
    for (const dependency of jobs.get(name)!.after) visit(dependency);
  };
  for (const root of roots) visit(root);
  return members;
}

// Why: a schedule tick of a job also runs what is derived from it.
/** `roots` plus every job that depends on one of them, transitively. */
export function withDependents(jobs: ReadonlyMap<string, DependencyNode>, roots: Iterable<string>): Set<string> {
  const members = new Set<string>([...roots].filter((name) => jobs.has(name)));
  let grew = true;
  while (grew) {
    grew = false;
    for (const [name, job] of jobs) {
      if (!members.has(name) && job.after.some((dependency) => members.has(dependency))) {
        members.add(name);
        grew = true;
      }
    }
  }
  return members;
}

// Why: summaries, status and the queue all list a cycle's jobs in the order they can run.
/** Members in dependency order (every job after its dependencies); ties broken by name. Cycles are a config error. */
export function dependencyOrder(jobs: ReadonlyMap<string, DependencyNode>, members: Iterable<string>): string[] {
  const set = new Set(members);
  const remaining = new Map<string, Set<string>>();
  for (const name of set) remaining.set(name, new Set((jobs.get(name)?.after ?? []).filter((d) => set.has(d) && d !== name)));
  const order: string[] = [];
  while (remaining.size > 0) {
    const ready = [...remaining].filter(([, deps]) => deps.size === 0).map(([name]) => name).sort();
    if (ready.length === 0) throw new Error(`dependency cycle among ${[...remaining.keys()].sort().join(', ')}`);
    const next = ready[0]!;
    order.push(next);
    remaining.delete(next);
    for (const deps of remaining.values()) deps.delete(next);
  }
  return order;
}

/** True when the cycle's members depend on one another (a cycle of unrelated jobs needs no ordering). */
export function hasDependencies(jobs: ReadonlyMap<string, DependencyNode>, members: Iterable<string>): boolean {
  const set = new Set(members);
  return [...set].some((name) => (jobs.get(name)?.after ?? []).some((dependency) => set.has(dependency)));
}

// Why: one wording for the reason of every skipped run, e.g. "dependency mlflow-runs failed (killed: memory)".
/** Why a dependency's final run blocks its dependents. */
export function dependencyFailure(dependency: string, run: Pick<CycleRun, 'state' | 'reason' | 'detail'>): string {
  if (run.state === 'skipped') return `dependency ${dependency} was skipped (${run.detail ?? run.reason ?? 'no reason recorded'})`;
  return `dependency ${dependency} failed (${run.state}${run.reason ? `: ${run.reason}` : ''})`;
}

type MemberState = { kind: 'succeeded' } | { kind: 'pending' } | { kind: 'failed'; why: CycleRun } | { kind: 'waiting' };

/**
 * The next step of a cycle. `members` in dependency order; `runs` every run of the cycle, oldest first
 * (a job's latest run counts: a queued retry keeps its job pending, so dependents wait for the retry).
 */
export function planCycle(members: readonly string[], dependenciesOf: (job: string) => readonly string[], runs: readonly CycleRun[]): CyclePlan {
  const latest = new Map<string, CycleRun>();
  for (const run of runs) latest.set(run.job, run);
  const memberSet = new Set(members);
  const states = new Map<string, MemberState>();
  const plan: CyclePlan = { queue: [], skip: [], waiting: new Map(), finished: false, ok: false };
  for (const job of members) {
    const run = latest.get(job);
    if (run) {
      if (!terminalStates.has(run.state)) states.set(job, { kind: 'pending' });
      else if (run.state === 'succeeded') states.set(job, { kind: 'succeeded' });
      else states.set(job, { kind: 'failed', why: run });
      continue;
    }
    const dependencies = dependenciesOf(job).filter((dependency) => memberSet.has(dependency));
    const failed = dependencies.find((dependency) => states.get(dependency)?.kind === 'failed');
    if (failed !== undefined) {
      const why = (states.get(failed) as { why: CycleRun }).why;
      const detail = dependencyFailure(failed, why);
      plan.skip.push({ job, dependency: failed, detail });
      states.set(job, { kind: 'failed', why: { id: '', job, state: 'skipped', reason: 'dependency', detail } });
      continue;
    }
    const notYet = dependencies.filter((dependency) => states.get(dependency)?.kind !== 'succeeded');
    if (notYet.length === 0) {
      plan.queue.push({ job, detail: dependencies.length ? `after ${dependencies.join(', ')} succeeded` : 'no dependencies' });
      states.set(job, { kind: 'pending' });
    } else {
      plan.waiting.set(job, notYet);
      states.set(job, { kind: 'waiting' });
    }
  }
  const kinds = [...states.values()].map((state) => state.kind);
  plan.finished = kinds.every((kind) => kind === 'succeeded' || kind === 'failed');
  plan.ok = plan.finished && kinds.every((kind) => kind === 'succeeded');
  return plan;
}
