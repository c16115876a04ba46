// A real swap overrun: a swap file is switched on, a Python child pushes its memory out with
// madvise(MADV_PAGEOUT), and the tree's VmSwap crosses limits.swap. Needs root and a filesystem that
// can hold a swap file; elsewhere the test is skipped with the reason.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startRun } from '../supervisor/run.js';
import { fixture, killIfRunning, makeJob, makeSpec, recordingObserver, tempDir } from './helpers/job.js';

const MiB = 1024 * 1024;
const TMPFS_MAGIC = 0x01021994;

function swapDirectory(): string {
  // Swap files cannot live on tmpfs; /var/tmp is disk-backed where /tmp is not.
  for (const base of [os.tmpdir(), '/var/tmp', process.cwd()]) {
    try {
      if (statfsSync(base).type !== TMPFS_MAGIC) return base;
    } catch {
      // try the next one
    }
  }
  return process.cwd();
}

function enableSwap(): { file: string; off: () => void } | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root to create and enable a swap file (runs in CI as root)' };
  const dir = mkdtempSync(path.join(swapDirectory(), 'dv-swap-'));
  const file = path.join(dir, 'swapfile');
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'pipe' });
  try {
    run('fallocate', ['-l', '1G', file]);
    run('chmod', ['600', file]);
    run('mkswap', [file]);
    run('swapon', [file]);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return { skip: `could not enable a swap file in ${dir}: ${stderr || (error as Error).message}` };
  }
  return {
    file,
    off: () => {
      if (!existsSync(file)) return;
      try {
        run('swapoff', [file]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

const swap = enableSwap();

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
