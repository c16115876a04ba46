// The pure dependency-cycle planner: membership, order, and what to queue/skip/wait for given a cycle's runs.
import test from 'ava';
import { dependencyFailure, dependencyOrder, hasDependencies, planCycle, withDependencies, withDependents, type CycleRun } from '../supervisor/cycles.js';
import type { RunState } from '../supervisor/types.js';

const jobs = new Map(
  Object.entries({
    runs: { after: [] },
    history: { after: [] },
    artifacts: { after: ['runs'] },
    rankings: { after: ['runs', 'history'] },
    curves: { after: ['artifacts'] },
    lone: { after: [] },
  }),
);
const deps = (job: string) => jobs.get(job)?.after ?? [];
let seq = 0;
const run = (job: string, state: RunState, reason: string | null = null, detail: string | null = null): CycleRun => ({ id: `r${++seq}`, job, state, reason, detail });

test('members: dependencies are pulled in transitively; dependents of a root too', (t) => {
  t.deepEqual([...withDependencies(jobs, ['curves'])].sort(), ['artifacts', 'curves', 'runs']);
  t.deepEqual([...withDependents(jobs, ['runs'])].sort(), ['artifacts', 'curves', 'rankings', 'runs']);
  t.deepEqual([...withDependencies(jobs, withDependents(jobs, ['runs']))].sort(), ['artifacts', 'curves', 'history', 'rankings', 'runs']);
  t.true(hasDependencies(jobs, ['runs', 'artifacts']));
  t.false(hasDependencies(jobs, ['runs', 'lone', 'history']));
});

test('dependency order puts every job after its dependencies, ties by name', (t) => {
  t.deepEqual(dependencyOrder(jobs, jobs.keys()), ['history', 'lone', 'runs', 'artifacts', 'curves', 'rankings']);
  t.throws(() => dependencyOrder(new Map([['a', { after: ['b'] }], ['b', { after: ['a'] }]]), ['a', 'b']), { message: /dependency cycle among a, b/ });
});

test('a new cycle queues the jobs without dependencies; the rest wait for what has not succeeded', (t) => {
  const members = dependencyOrder(jobs, withDependencies(jobs, ['rankings', 'curves']));
  const plan = planCycle(members, deps, []);
  t.deepEqual(plan.queue.map((q) => q.job), ['history', 'runs']);
  t.deepEqual([...plan.waiting], [['artifacts', ['runs']], ['curves', ['artifacts']], ['rankings', ['runs', 'history']]]);
  t.false(plan.finished);
  const later = planCycle(members, deps, [run('history', 'succeeded'), run('runs', 'running')]);
  t.deepEqual(later.queue, []);
  t.deepEqual(later.waiting.get('rankings'), ['runs']);
});

test('a job is queued once all its dependencies succeeded, and only once', (t) => {
  const members = ['runs', 'history', 'rankings'];
  const plan = planCycle(members, deps, [run('runs', 'succeeded'), run('history', 'succeeded')]);
  t.deepEqual(plan.queue, [{ job: 'rankings', detail: 'after runs, history succeeded' }]);
  const after = planCycle(members, deps, [run('runs', 'succeeded'), run('history', 'succeeded'), run('rankings', 'queued')]);
  t.deepEqual(after.queue, []);
  t.false(after.finished);
});

test('a failed dependency with a retry queued keeps dependents waiting; without one, they are skipped transitively', (t) => {
  const members = ['runs', 'artifacts', 'curves'];
  const retrying = planCycle(members, deps, [run('runs', 'failed', 'crash'), run('runs', 'queued')]);
  t.deepEqual(retrying.skip, []);
  t.deepEqual(retrying.waiting.get('artifacts'), ['runs']);
  const failed = planCycle(members, deps, [run('runs', 'queued'), run('runs', 'killed', 'memory')]);
  t.deepEqual(failed.skip, [
    { job: 'artifacts', dependency: 'runs', detail: 'dependency runs failed (killed: memory)' },
    { job: 'curves', dependency: 'artifacts', detail: 'dependency artifacts was skipped (dependency runs failed (killed: memory))' },
  ]);
  t.true(failed.finished);
  t.false(failed.ok);
});

test('finished and ok only when every member succeeded', (t) => {
  const members = ['runs', 'artifacts'];
  const plan = planCycle(members, deps, [run('runs', 'succeeded'), run('artifacts', 'succeeded')]);
  t.true(plan.finished);
  t.true(plan.ok);
  t.is(dependencyFailure('x', { state: 'failed', reason: 'validation', detail: null }), 'dependency x failed (failed: validation)');
});
