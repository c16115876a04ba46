// Limits enforced on real processes: tree RSS (also when a grandchild holds it), max runtime, exit status.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { startRun } from '../supervisor/run.js';
import { fixture, killIfRunning, makeJob, makeSpec, pidsInLog, recordingObserver, runningInProc, tempDir } from './helpers/job.js';

const MiB = 1024 * 1024;

test('a leaker growing ~100 MB/s is killed for memory with the measured value above the configured limit', async (t) => {
  const { dir, cleanup } = tempDir();
  const limit = 200 * MiB;
  const job = makeJob({ name: 'leaker', limits: { rss: limit } });
  const spec = makeSpec(dir, job, [process.execPath, fixture('leaker.mjs'), '100']);
  const { observer, recorded } = recordingObserver();
  const handle = startRun(spec, observer);
  t.teardown(() => {
    if (handle.pid) killIfRunning([handle.pid]);
    cleanup();
  });
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'memory');
  t.is(recorded.kills.length, 1);
  const kill = recorded.kills[0]!;
  t.is(kill.reason, 'memory');
  t.is(kill.limit, limit);
  t.true(kill.measured! > limit, `measured ${kill.measured} must exceed the limit ${limit}`);
  t.true(outcome.peakRss >= kill.measured!);
  t.deepEqual(outcome.survivors, []);
  t.false(runningInProc(handle.pid!));
  // At most one warning per kind, and only about memory.
  t.true(recorded.warnings.every((w) => w.kind === 'memory' && w.measured > 0.8 * limit));
  t.true(recorded.warnings.length <= 1);
  // Diagnostics captured the leaker's /proc files and its log.
  t.is(recorded.diagnostics.length, 1);
  t.regex(recorded.diagnostics[0]!, /=== \/proc\/\d+\/smaps_rollup/);
  t.regex(recorded.diagnostics[0]!, /VmRSS:/);
  t.regex(recorded.diagnostics[0]!, /"rss":\d+/);
  // The leaker's own log reached the log file.
  t.regex(readFileSync(spec.logFile, 'utf8'), /"t":\d+,"rss":\d+/);
});

test('a child whose grandchild holds the memory is caught by the tree RSS', async (t) => {
  const { dir, cleanup } = tempDir();
  const limit = 150 * MiB;
  const job = makeJob({ name: 'tree-leaker', limits: { rss: limit } });
  const spec = makeSpec(dir, job, [process.execPath, fixture('tree-leaker.mjs'), '100']);
  const { observer, recorded } = recordingObserver();
  const handle = startRun(spec, observer);
  t.teardown(() => {
    killIfRunning([...(handle.pid ? [handle.pid] : []), ...pidsInLog(spec.logFile)]);
    cleanup();
  });
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'memory');
  t.is(recorded.kills[0]!.limit, limit);
  t.true(recorded.kills[0]!.measured! > limit);
  // The tree had the child and its grandchild in it, and the grandchild is dead too.
  t.true(recorded.samples.some((sample) => sample.procs >= 2));
  const grandchildren = pidsInLog(spec.logFile);
  t.is(grandchildren.length, 1);
  t.false(runningInProc(grandchildren[0]!));
  t.deepEqual(outcome.survivors, []);
});

test('max_runtime kills a run that takes too long with reason timeout', async (t) => {
  const { dir, cleanup } = tempDir();
  const job = makeJob({ name: 'sleeper', max_runtime: 600, stop_grace: 1000 });
  const handle = startRun(makeSpec(dir, job, ['sleep', '100']), recordingObserver().observer);
  t.teardown(() => {
    if (handle.pid) killIfRunning([handle.pid]);
    cleanup();
  });
  const outcome = await handle.done;
  t.is(outcome.state, 'killed');
  t.is(outcome.reason, 'timeout');
  t.is(outcome.signal, 'SIGTERM');
  t.regex(outcome.detail ?? '', /max_runtime/);
});

test('exit status decides between succeeded and failed (crash)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const ok = await startRun(makeSpec(dir, makeJob(), ['sh', fixture('exit-code.sh'), '0']), recordingObserver().observer).done;
  t.is(ok.state, 'succeeded');
  t.is(ok.reason, null);
  t.is(ok.exitCode, 0);
  const bad = await startRun(makeSpec(dir, makeJob(), ['sh', fixture('exit-code.sh'), '3']), recordingObserver().observer).done;
  t.is(bad.state, 'failed');
  t.is(bad.reason, 'crash');
  t.is(bad.exitCode, 3);
  t.regex(bad.detail ?? '', /code 3/);
  const missing = await startRun(makeSpec(dir, makeJob(), ['/nonexistent/program']), recordingObserver().observer).done;
  t.is(missing.state, 'failed');
  t.is(missing.reason, 'crash');
  t.regex(missing.detail ?? '', /could not start/);
});
