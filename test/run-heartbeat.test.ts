// The liveness and progress clocks on real children: IPC silence, stalls, stdout progress, bad messages.
import test from 'ava';
import { startRun } from '../supervisor/run.js';
import { fixture, killIfRunning, makeJob, makeSpec, recordingObserver, runningInProc, tempDir } from './helpers/job.js';

test('a child that blocks its event loop after hello is killed for heartbeat', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'silent', heartbeat: 'ipc', heartbeat_timeout: 800, stop_grace: 500 });
  const { observer, recorded } = recordingObserver();
  const handle = startRun(makeSpec(dir, job, [process.execPath, fixture('silent-ipc.mjs')]), observer);
  t.teardown(() => {
    if (handle.pid) killIfRunning([handle.pid]);
    cleanup();
  });
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'heartbeat');
  t.true(recorded.messages.some((m) => m.type === 'hello'));
  t.is(recorded.messages.filter((m) => m.type === 'heartbeat').length, 3);
  const kill = recorded.kills[0]!;
  t.is(kill.limit, 800);
  t.true(kill.measured! > 800);
  t.regex(kill.detail, /no message for/);
  t.false(runningInProc(handle.pid!));
});

test('a child that never says hello is killed for heartbeat, counted from spawn', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'mute', heartbeat: 'ipc', heartbeat_timeout: 500, stop_grace: 500 });
  const { observer, recorded } = recordingObserver();
  const handle = startRun(makeSpec(dir, job, ['sleep', '100']), observer);
  t.teardown(() => {
    if (handle.pid) killIfRunning([handle.pid]);
    cleanup();
  });
  const outcome = await handle.done;
  t.is(outcome.reason, 'heartbeat');
  t.regex(recorded.kills[0]!.detail, /no hello/);
});

test('a child that beats but never advances is killed stalled', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'stalled', heartbeat: 'ipc', heartbeat_timeout: 3000, stall_timeout: 1200, warn_at: 0.5, stop_grace: 500 });
  const { observer, recorded } = recordingObserver();
  const handle = startRun(makeSpec(dir, job, [process.execPath, fixture('stalled-ipc.mjs')]), observer);
  t.teardown(() => {
    if (handle.pid) killIfRunning([handle.pid]);
    cleanup();
  });
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'stalled');
  t.is(outcome.progress?.done, 5);
  t.is(outcome.progress?.total, 100);
  t.is(outcome.progress?.unit, 'runs');
  t.true(recorded.messages.filter((m) => m.type === 'heartbeat').length >= 5, 'heartbeats kept coming');
  t.is(recorded.kills[0]!.limit, 1200);
  t.regex(recorded.kills[0]!.detail, /progress stuck at 5\/100 runs/);
  // warn_at 0.5 leaves a 600 ms window (several ticks) for the one-time warning before the kill.
  t.deepEqual(recorded.warnings.map((w) => w.kind), ['stalled']);
});

test('a Python script printing [HEARTBEAT] n/m lines is supervised with progress (heartbeat: stdout)', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'python', heartbeat: 'stdout', stall_timeout: 5000 });
  const { observer, recorded } = recordingObserver();
  const outcome = await startRun(makeSpec(dir, job, ['python3', fixture('progress.py'), '12']), observer).done;
  t.teardown(cleanup);
  t.is(outcome.state, 'succeeded');
  t.deepEqual(recorded.progress.map((p) => p.done), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  t.is(outcome.progress?.done, 12);
  t.is(outcome.progress?.total, 12);
});

test('a stdout job whose progress stops is killed stalled', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'python-stuck', heartbeat: 'stdout', stall_timeout: 700, stop_grace: 500 });
  const script = 'import time\nprint("[HEARTBEAT] 1/9", flush=True)\ntime.sleep(100)\n';
  const handle = startRun(makeSpec(dir, job, ['python3', '-c', script]), recordingObserver().observer);
  t.teardown(() => {
    if (handle.pid) killIfRunning([handle.pid]);
    cleanup();
  });
  const outcome = await handle.done;
  t.is(outcome.reason, 'stalled');
  t.is(outcome.progress?.done, 1);
});

test('malformed IPC messages are survived and counted; valid ones still arrive', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'bad-messages', heartbeat: 'ipc', heartbeat_timeout: 10_000 });
  const { observer, recorded } = recordingObserver();
  const outcome = await startRun(makeSpec(dir, job, [process.execPath, fixture('bad-messages.mjs')]), observer).done;
  t.teardown(cleanup);
  t.is(outcome.state, 'succeeded');
  t.is(outcome.badMessages, 5);
  t.is(recorded.badMessages.length, 5);
  t.true(recorded.badMessages.some((e) => /exceeds/.test(e)), 'the 10 MB message is rejected for its size');
  t.true(recorded.badMessages.some((e) => /launch-missiles/.test(e)));
  t.is(outcome.ready?.rows, 3);
  t.is(outcome.progress?.done, 3);
});

test('lines that are not JSON on the channel (Python child) are counted, not fatal', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'bad-json', heartbeat: 'ipc', heartbeat_timeout: 10_000 });
  const { observer, recorded } = recordingObserver();
  const outcome = await startRun(makeSpec(dir, job, ['python3', fixture('bad-json.py')]), observer).done;
  t.teardown(cleanup);
  t.is(outcome.state, 'succeeded');
  t.is(outcome.badMessages, 2);
  t.true(recorded.badMessages.every((e) => /not JSON/.test(e)));
  t.deepEqual(recorded.messages.map((m) => m.type), ['hello', 'ready']);
  t.not(outcome.ready, null);
});
