// A real swap overrun: a swap file is switched on, a Python child pushes its memory out with
// madvise(MADV_PAGEOUT), and the tree's VmSwap crosses limits.swap. Needs root and a filesystem that
// can hold a swap file; elsewhere the test is skipped with the reason.
import test from 'ava';
import { startRun } from '../supervisor/run.js';
import { enableSwapFile } from './helpers/swap-file.js';
import { fixture, killIfRunning, makeJob, makeSpec, recordingObserver, tempDir } from './helpers/job.js';

const MiB = 1024 * 1024;
const swap = enableSwapFile('1G');

if ('skip' in swap) {
  console.log(`run-swap: skipped: ${swap.skip}`);
  test.skip(`a child pushed into swap is killed for swap (skipped: ${swap.skip})`, () => {});
} else {
  // after.always (not a teardown) so the swap file is removed even when the test is filtered out.
  test.after.always(swap.off);
  test('a child pushed into swap is killed for swap', async (t) => {
    const { dir, cleanup } = tempDir();
    const limit = 64 * MiB;
    const job = makeJob({ name: 'swapper', limits: { swap: limit }, stop_grace: 1000, max_runtime: 60_000 });
    const { observer, recorded } = recordingObserver();
    const handle = startRun(makeSpec(dir, job, ['python3', fixture('swapper.py'), '300']), observer);
    t.teardown(() => {
      if (handle.pid) killIfRunning([handle.pid]);
      cleanup();
    });
    const outcome = await handle.done;
    t.is(outcome.state, 'killed');
    t.is(outcome.reason, 'swap');
    t.is(recorded.kills[0]!.limit, limit);
    t.true(recorded.kills[0]!.measured! > limit);
    t.true(outcome.peakSwap > limit);
    t.deepEqual(outcome.survivors, []);
  });
}
