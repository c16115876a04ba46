// Crash recovery: supervising a process group that a previous daemon started (pid + start time).
import test from 'ava';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { processStartTime } from '../supervisor/proc.js';
import { startRun } from '../supervisor/run.js';
import { killIfRunning, makeJob, makeSpec, recordingObserver, runningInProc, tempDir } from './helpers/job.js';

function orphanGroup(script: string): { pid: number; startTime: string } {
  const child = spawn('bash', ['-c', script], { detached: true, stdio: 'ignore' });
  child.unref();
  return { pid: child.pid!, startTime: processStartTime(child.pid!)! };
}

test('an adopted group is sampled and stopped; its child dies too', async (t) => {
  const { dir, cleanup } = tempDir();
  const adopt = orphanGroup('sleep 100 & wait');
  const job = makeJob({ name: 'adopted', heartbeat: 'ipc', heartbeat_timeout: 200, stop_grace: 500 });
  const { observer, recorded } = recordingObserver();
  const handle = startRun(makeSpec(dir, job, ['unused'], { adopt, ipc: false }), observer);
  t.teardown(() => {
    killIfRunning([adopt.pid]);
    cleanup();
  });
  t.is(handle.pid, adopt.pid);
  t.deepEqual(recorded.started, [adopt]);
  while (!recorded.samples.some((s) => s.procs === 2)) await sleep(25);
  // No channel to an adopted process: the heartbeat rule cannot apply (200 ms passed without a kill).
  await sleep(300);
  t.is(recorded.kills.length, 0);
  handle.stop('operator');
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'operator');
  t.deepEqual(outcome.survivors, []);
  t.false(runningInProc(adopt.pid));
});

test('an adopted group that ends on its own is a crash with unknown exit status', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const adopt = orphanGroup('sleep 0.5');
  const outcome = await startRun(makeSpec(dir, makeJob(), ['unused'], { adopt }), recordingObserver().observer).done;
  t.is(outcome.state, 'failed');
  t.is(outcome.reason, 'crash');
  t.is(outcome.exitCode, null);
  t.regex(outcome.detail ?? '', /exit status is unknown/);
});

test('adoption refuses a pid whose start time does not match (recycled pid)', async (t) => {
  const { dir, cleanup } = tempDir();
  const adopt = orphanGroup('sleep 100');
  t.teardown(() => {
    killIfRunning([adopt.pid]);
    cleanup();
  });
  const wrong = { pid: adopt.pid, startTime: String(Number(adopt.startTime) - 1) };
  const { observer, recorded } = recordingObserver();
  const outcome = await startRun(makeSpec(dir, makeJob(), ['unused'], { adopt: wrong }), observer).done;
  t.is(outcome.state, 'failed');
  t.regex(outcome.detail ?? '', /no longer running/);
  t.is(recorded.started.length, 0);
  t.true(runningInProc(adopt.pid), 'the unrelated process was not touched');
});
