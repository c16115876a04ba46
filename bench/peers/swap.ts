// A temporary swap file for the swap scenario (root only), from the same helper the tests use. The
// machine has no swap by default; the file lives under bench/work and is always switched off and removed,
// and one left by an interrupted run is removed before the next run starts.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { enableSwapFile as enableSharedSwapFile } from '../../test/helpers/swap-file.js';

export interface SwapFile {
  remove(): void;
}

/** Returns a handle on success, or the reason swap is not available here. */
export function enableSwapFile(dir: string, sizeMiB = 1024): SwapFile | string {
  const swap = enableSharedSwapFile(`${sizeMiB}M`, dir);
  if ('skip' in swap) return swap.skip;
  return { remove: () => swap.off() };
}

/** Switches off and deletes swap files an earlier run left in `dir` (dv-swap-* folders); returns their paths. */
export function removeStaleSwapFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const stale = readdirSync(dir).filter((entry) => entry.startsWith('dv-swap-')).map((entry) => path.join(dir, entry));
  if (stale.length === 0) return [];
  const active = readFileSync('/proc/swaps', 'utf8').split('\n').slice(1).map((line) => line.split(/\s+/)[0]!).filter(Boolean);
  for (const folder of stale) {
    for (const file of active.filter((swapFile) => swapFile.startsWith(folder + '/'))) {
      try {
        execFileSync('swapoff', [file], { stdio: 'pipe' });
      } catch {
        // not ours to switch off, or already off: the folder removal below still applies
      }
    }
    rmSync(folder, { recursive: true, force: true });
  }
  return stale;
}
