// A temporary swap file for the swap scenario (root only). The machine has no swap by default; the
// file lives under bench/work and is always switched off and removed afterwards.
import { execa } from 'execa';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';

export interface SwapFile {
  remove(): Promise<void>;
}

/** Returns a handle on success, or the reason swap is not available here. */
export async function enableSwapFile(dir: string, sizeMiB = 1024): Promise<SwapFile | string> {
  if (process.getuid?.() !== 0) return 'needs root to create a swap file';
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'bench.swap');
  const steps: [string, string[]][] = [
    ['fallocate', ['-l', `${sizeMiB}M`, file]],
    ['chmod', ['600', file]],
    ['mkswap', [file]],
    ['swapon', [file]],
  ];
  for (const [command, args] of steps) {
    const result = await execa(command, args, { reject: false });
    if (result.exitCode !== 0) {
      rmSync(file, { force: true });
      return `${command} failed: ${result.stderr.trim()}`;
    }
  }
  return {
    async remove() {
      await execa('swapoff', [file], { reject: false });
      rmSync(file, { force: true });
    },
  };
}
