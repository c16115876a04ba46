// The stop sequence on real process trees: SIGTERM ignored, setsid escapers, leftovers, operator stops.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { startRun } from '../supervisor/run.js';
import { stopSchedule } from '../supervisor/stop.js';
import type { RunHandle } from '../supervisor/types.js';
import { fixture, killIfRunning, makeJob, makeSpec, pidsInLog, recordingObserver, runningInProc, tempDir } from './helpers/job.js';

async function waitForPids(logFile: string, count: number): Promise<number[]> {
  for (let i = 0; i < 200; i++) {
    const pids = pidsInLog(logFile);
    if (pids.length >= count) return pids;
    await sleep(25);
  }
  throw new Error(`${logFile} never listed ${count} pids`);
}

function guard(t: { teardown: (fn: () => void) => void }, handle: RunHandle, logFile: string, cleanup: () => void): void {
  t.teardown(() => {
    killIfRunning([...(handle.pid ? [handle.pid] : []), ...pidsInLog(logFile)]);
    cleanup();
  });
}

test('a child that ignores SIGTERM dies by SIGKILL after stop_grace', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'stubborn', stop_grace: 500 });
  const spec = makeSpec(dir, job, [process.execPath, fixture('ignore-term.mjs')]);
  const { observer, recorded } = recordingObserver();
  const handle = startRun(spec, observer);
  guard(t, handle, spec.logFile, cleanup);
  await sleep(300);
  handle.stop('operator');
  handle.stop('operator'); // idempotent
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'operator');
  t.is(outcome.signal, 'SIGKILL');
  t.deepEqual(outcome.survivors, []);
  t.is(recorded.kills.length, 1);
  t.false(runningInProc(handle.pid!));
  t.is(readFileSync(spec.logFile, 'utf8'), 'ready\nSIGTERM ignored\n', 'no channel: one SIGTERM, then SIGKILL');
});

test('stopping a child whose grandchildren include a setsid escaper leaves no survivor', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'spawner', stop_grace: 1000 });
  const spec = makeSpec(dir, job, ['bash', fixture('spawner.sh')]);
  const handle = startRun(spec, recordingObserver().observer);
  guard(t, handle, spec.logFile, cleanup);
  const grandchildren = await waitForPids(spec.logFile, 2);
  t.true(grandchildren.every(runningInProc), 'both grandchildren run before the stop');
  handle.stop('operator');
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.deepEqual(outcome.survivors, []);
  for (const pid of [handle.pid!, ...grandchildren]) t.false(runningInProc(pid), `pid ${pid} must be dead`);
});

test('a Node grandchild that left the group (spawn detached) is killed with the run', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'node-setsid', stop_grace: 1000, max_runtime: 1500 });
  const spec = makeSpec(dir, job, [process.execPath, fixture('node-setsid.mjs')]);
  const handle = startRun(spec, recordingObserver().observer);
  guard(t, handle, spec.logFile, cleanup);
  const [escaper] = await waitForPids(spec.logFile, 1);
  const outcome = await handle.done;
  t.is(outcome.reason, 'timeout');
  t.deepEqual(outcome.survivors, []);
  t.false(runningInProc(escaper!));
  t.false(runningInProc(handle.pid!));
});

test('processes left behind by a main process that exited are swept; the run still succeeds', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'leaves-behind', stop_grace: 500 });
  const spec = makeSpec(dir, job, ['bash', fixture('spawner.sh'), 'exit']);
  const handle = startRun(spec, recordingObserver().observer);
  guard(t, handle, spec.logFile, cleanup);
  const outcome = await handle.done;
  const grandchildren = pidsInLog(spec.logFile);
  t.is(grandchildren.length, 2);
  t.is(outcome.state, 'succeeded');
  t.is(outcome.exitCode, 0);
  t.regex(outcome.detail ?? '', /leftover/);
  t.deepEqual(outcome.survivors, []);
  for (const pid of grandchildren) t.false(runningInProc(pid), `pid ${pid} must be dead`);
});

test('an operator stop lets an IPC child that honours `stop` exit cleanly before any signal', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'polite', heartbeat: 'ipc', heartbeat_timeout: 5000, stop_grace: 3000 });
  const script = `process.send({type:'hello',protocol:1,extractor:'polite',pid:process.pid});
process.on('message', (m) => { if (m.type === 'stop') { console.log('stopping: ' + m.reason); process.exit(0); } });
setInterval(() => process.send({type:'heartbeat'}), 100);`;
  const spec = makeSpec(dir, job, [process.execPath, '--input-type=module', '-e', script]);
  const { observer, recorded } = recordingObserver();
  const handle = startRun(spec, observer);
  guard(t, handle, spec.logFile, cleanup);
  while (!recorded.messages.some((m) => m.type === 'hello')) await sleep(20);
  handle.stop('operator', 'maintenance');
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'operator');
  t.is(outcome.detail, 'maintenance');
  t.is(outcome.exitCode, 0);
  t.is(outcome.signal, null);
});

test('an IPC child that ignores both `stop` and SIGTERM hears them in that order, then dies by SIGKILL', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'deaf', heartbeat: 'ipc', heartbeat_timeout: 5000, stop_grace: 2000 });
  const script = `process.send({type:'hello',protocol:1,extractor:'deaf',pid:process.pid});
process.on('message', (m) => console.log('got ' + m.type));
process.on('SIGTERM', () => console.log('SIGTERM ignored'));
setInterval(() => process.send({type:'heartbeat'}), 100);`;
  const spec = makeSpec(dir, job, [process.execPath, '--input-type=module', '-e', script]);
  const { observer, recorded } = recordingObserver();
  const handle = startRun(spec, observer);
  guard(t, handle, spec.logFile, cleanup);
  while (!recorded.messages.some((m) => m.type === 'hello')) await sleep(20);
  handle.stop('operator');
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.signal, 'SIGKILL');
  t.deepEqual(outcome.survivors, []);
  // Exactly one SIGTERM: the group signal reaches the child, and members of the group are not signalled twice.
  t.deepEqual(readFileSync(spec.logFile, 'utf8').trim().split('\n'), ['got stop', 'SIGTERM ignored']);
});

test('stopSchedule: the clean-exit window of an operator stop over IPC lies inside stop_grace; without a channel SIGTERM goes at once', (t) => {
  // No channel (or a limit kill): SIGTERM at the request, SIGKILL stop_grace later.
  t.deepEqual(stopSchedule('operator', 2000, false), { sigtermAtMs: 0, sigkillAtMs: 2000 });
  t.deepEqual(stopSchedule('operator', 10_000, false), { sigtermAtMs: 0, sigkillAtMs: 10_000 });
  t.deepEqual(stopSchedule('limit', 10_000, true), { sigtermAtMs: 0, sigkillAtMs: 10_000 });
  // Stop sent over IPC: SIGTERM after min(grace/2, 2 s), and SIGKILL still at stop_grace after the request.
  t.deepEqual(stopSchedule('operator', 2000, true), { sigtermAtMs: 1000, sigkillAtMs: 2000 });
  t.deepEqual(stopSchedule('operator', 10_000, true), { sigtermAtMs: 2000, sigkillAtMs: 10_000 });
  t.deepEqual(stopSchedule('operator', 0, true), { sigtermAtMs: 0, sigkillAtMs: 0 });
  t.deepEqual(stopSchedule('operator', -5, false), { sigtermAtMs: 0, sigkillAtMs: 0 });
});
