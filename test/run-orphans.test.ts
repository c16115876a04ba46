// Escapers the sampler never saw: a grandchild that leaves the run's session (setsid, double fork)
// before the first sample, found at run end by the run id in its environment and killed.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { environCarriesRunId, findRunProcesses, processStartTime } from '../supervisor/proc.js';
import { startRun } from '../supervisor/run.js';
import type { RunHandle } from '../supervisor/types.js';
import { fixture, killIfRunning, makeJob, makeSpec, pidsInLog, recordingObserver, runningInProc, tempDir } from './helpers/job.js';

/** Running processes whose /proc environ has DUCKVISOR_RUN_ID=<runId>: an independent scan, not the one under test. */
function processesCarrying(runId: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`DUCKVISOR_RUN_ID=${runId}`) && runningInProc(pid)) found.push(pid);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

function guard(t: { teardown: (fn: () => void) => void }, handle: RunHandle, runId: string, logFile: string, cleanup: () => void): void {
  t.teardown(() => {
    killIfRunning([...(handle.pid ? [handle.pid] : []), ...pidsInLog(logFile), ...processesCarrying(runId)]);
    cleanup();
  });
}

async function waitForGrandchild(logFile: string): Promise<number> {
  for (let i = 0; i < 400; i++) {
    const [pid] = pidsInLog(logFile);
    if (pid !== undefined) return pid;
    await sleep(25);
  }
  throw new Error(`${logFile} never named its grandchild`);
}

test('a setsid grandchild left behind at once by a Node leader that exits is killed when the run ends', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'quick-escape', stop_grace: 500 });
  const base = makeSpec(dir, job, [process.execPath, fixture('setsid-and-exit.mjs')]);
  const spec = { ...base, env: { ...base.env, DUCKVISOR_RUN_ID: base.runId } };
  const handle = startRun(spec, recordingObserver().observer);
  guard(t, handle, spec.runId, spec.logFile, cleanup);
  const outcome = await handle.done;
  const grandchild = pidsInLog(spec.logFile)[0];
  t.not(grandchild, undefined, 'the fixture named its grandchild');
  t.is(outcome.state, 'succeeded');
  t.is(outcome.exitCode, 0);
  // Usually the end-of-run sweep finds it by its run id; on a loaded machine a sample may see it first.
  t.regex(outcome.detail ?? '', /leftover processes stopped/);
  t.deepEqual(outcome.survivors, []);
  t.false(runningInProc(grandchild!), `grandchild ${grandchild} must be dead`);
  t.deepEqual(processesCarrying(spec.runId), []);
});

test('a double-forked grandchild that ignores SIGTERM is SIGKILLed after the leader exits; the run id marks it even when the spec did not set it', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'daemonizer', stop_grace: 400 });
  const spec = makeSpec(dir, job, ['python3', fixture('double-fork.py'), 'exit', 'stubborn']);
  t.false('DUCKVISOR_RUN_ID' in spec.env);
  const handle = startRun(spec, recordingObserver().observer);
  guard(t, handle, spec.runId, spec.logFile, cleanup);
  const outcome = await handle.done;
  const grandchild = pidsInLog(spec.logFile)[0];
  t.not(grandchild, undefined, 'the fixture named its grandchild');
  t.is(outcome.state, 'succeeded');
  t.regex(outcome.detail ?? '', /leftover/);
  t.deepEqual(outcome.survivors, []);
  t.false(runningInProc(grandchild!), `grandchild ${grandchild} must be dead`);
  t.deepEqual(processesCarrying(spec.runId), []);
});

test('an operator stop kills a grandchild that double-forked away before the first sample', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'daemonizer-stay', stop_grace: 500 });
  const spec = makeSpec(dir, job, ['python3', fixture('double-fork.py'), 'stay', 'stubborn']);
  const { observer, recorded } = recordingObserver();
  const handle = startRun(spec, observer);
  guard(t, handle, spec.runId, spec.logFile, cleanup);
  const grandchild = await waitForGrandchild(spec.logFile);
  t.true(runningInProc(grandchild));
  // Let the sampler walk the tree twice more: the grandchild is in none of its walks.
  const seen = recorded.samples.length;
  while (recorded.samples.length < seen + 2) await sleep(25);
  t.is(recorded.samples.at(-1)!.procs, 1, 'the sampler sees only the leader');
  handle.stop('operator');
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'operator');
  t.deepEqual(outcome.survivors, []);
  t.false(runningInProc(grandchild), `grandchild ${grandchild} must be dead`);
  t.false(runningInProc(handle.pid!));
  t.deepEqual(processesCarrying(spec.runId), []);
});

test('a limit kill also reaches the escaper (max_runtime)', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'daemonizer-timeout', stop_grace: 300, max_runtime: 800 });
  const spec = makeSpec(dir, job, ['python3', fixture('double-fork.py'), 'stay']);
  const handle = startRun(spec, recordingObserver().observer);
  guard(t, handle, spec.runId, spec.logFile, cleanup);
  const grandchild = await waitForGrandchild(spec.logFile);
  const outcome = await handle.done;
  t.is(outcome.reason, 'timeout');
  t.deepEqual(outcome.survivors, []);
  t.false(runningInProc(grandchild), `grandchild ${grandchild} must be dead`);
  t.deepEqual(processesCarrying(spec.runId), []);
});

test('the sweep leaves alone a process older than the run and an alert hook, even with the same run id', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'neighbours', stop_grace: 300 });
  const base = makeSpec(dir, job, [process.execPath, fixture('setsid-and-exit.mjs')]);
  const runEnv = { ...base.env, DUCKVISOR_RUN_ID: base.runId };
  const older = spawn('sleep', ['1000'], { env: runEnv, detached: true, stdio: 'ignore' });
  // Start-time ticks are 10 ms: make sure the run's leader is born in a later tick.
  await sleep(50);
  const handle = startRun({ ...base, env: runEnv }, recordingObserver().observer);
  const hook = spawn('sleep', ['1000'], { env: { ...runEnv, DUCKVISOR_EVENT: 'warning' }, detached: true, stdio: 'ignore' });
  t.teardown(() => {
    killIfRunning([older.pid!, hook.pid!, ...pidsInLog(base.logFile)]);
    cleanup();
  });
  const outcome = await handle.done;
  t.is(outcome.state, 'succeeded');
  t.false(runningInProc(pidsInLog(base.logFile)[0]!), 'the run\'s own escaper is dead');
  t.true(runningInProc(older.pid!), 'a process started before the run is not the run\'s');
  t.true(runningInProc(hook.pid!), 'an alert hook carrying the run id is not the run\'s');
  t.deepEqual(processesCarrying(base.runId).sort(), [older.pid!, hook.pid!].sort());
});

test('findRunProcesses names processes by pid and start time, skipping older ones', async (t) => {
  const runId = `scan-${process.pid}-${Date.now()}`;
  const child = spawn('sleep', ['30'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DUCKVISOR_RUN_ID: runId }, stdio: 'ignore' });
  t.teardown(() => killIfRunning([child.pid!]));
  let startTime: string | null = null;
  for (let i = 0; i < 100 && !(startTime && readFileSync(`/proc/${child.pid}/cmdline`, 'latin1').startsWith('sleep')); i++) {
    await sleep(10);
    startTime = processStartTime(child.pid!);
  }
  t.deepEqual(findRunProcesses(runId), [{ pid: child.pid!, startTime: startTime! }]);
  t.deepEqual(findRunProcesses(runId, startTime), [{ pid: child.pid!, startTime: startTime! }]);
  t.deepEqual(findRunProcesses(runId, String(Number(startTime) + 1)), [], 'born before the bound');
  t.deepEqual(findRunProcesses(`${runId}x`), [], 'a longer id is another run');
  t.deepEqual(findRunProcesses(runId.slice(0, -1)), [], 'a prefix is another run');
});

test('environCarriesRunId matches the whole variable only', (t) => {
  const environ = (...vars: string[]) => Buffer.from(vars.map((v) => `${v}\0`).join(''), 'latin1');
  const check = (buffer: Buffer, id: string) => environCarriesRunId(buffer, buffer.length, id);
  t.true(check(environ('DUCKVISOR_RUN_ID=r1'), 'r1'), 'first variable');
  t.true(check(environ('PATH=/bin', 'DUCKVISOR_RUN_ID=r1', 'HOME=/'), 'r1'), 'middle variable');
  t.false(check(environ('DUCKVISOR_RUN_ID=r12'), 'r1'));
  t.false(check(environ('DUCKVISOR_RUN_ID=r1'), 'r12'));
  t.false(check(environ('XDUCKVISOR_RUN_ID=r1'), 'r1'), 'another variable ending in the name');
  t.false(check(environ('NOTE=DUCKVISOR_RUN_ID=r1'), 'r1'), 'the text inside another value');
  t.false(check(environ('DUCKVISOR_EVENT=killed', 'DUCKVISOR_RUN_ID=r1'), 'r1'), 'an alert hook');
  const shared = Buffer.alloc(64, 0x41);
  environ('DUCKVISOR_RUN_ID=r1').copy(shared);
  t.true(environCarriesRunId(shared, 20, 'r1'), 'only the first `length` bytes count');
  t.false(environCarriesRunId(shared, 10, 'r1'));
});
