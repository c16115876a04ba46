// One temporary swap file for every test and bench that needs real swap (the machine has none by
// default). Root only; the file is put on a disk-backed filesystem because swapon refuses tmpfs, and it
// is always switched off and removed by `off()`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TMPFS_MAGIC = 0x01021994;

/** A swap file switched on, or the reason it cannot be (not root, tmpfs only, swapon refused). */
export type SwapFileResult = { file: string; off: () => void } | { skip: string };

/** The first of the candidate folders that is not tmpfs (falls back to the working directory). */
function diskBackedDirectory(candidates: string[]): string {
  for (const candidate of candidates) {
    try {
      if (statfsSync(candidate).type !== TMPFS_MAGIC) return candidate;
    } catch {
      // not there: try the next one
    }
  }
  return process.cwd();
}

/** Creates and enables a swap file of `size` (fallocate syntax, e.g. "512M", "1G") under `baseDir`. */
export function enableSwapFile(size = '512M', baseDir?: string): SwapFileResult {
  if (process.getuid?.() !== 0) return { skip: 'needs root to create and enable a swap file (runs in CI as root)' };
  if (baseDir) mkdirSync(baseDir, { recursive: true });
  const base = baseDir ?? diskBackedDirectory([os.tmpdir(), '/var/tmp', process.cwd()]);
  const dir = mkdtempSync(path.join(base, 'dv-swap-'));
  const file = path.join(dir, 'swapfile');
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'pipe' });
  try {
    run('fallocate', ['-l', size, file]);
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
