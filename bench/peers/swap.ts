// A temporary swap file for the swap scenario (root only), from the same helper the tests use. The
// machine has no swap by default; the file lives under bench/work and is always switched off and removed.
import { enableSwapFile as enableSharedSwapFile } from '../../test/helpers/swap-file.js';

export interface SwapFile {
  remove(): Promise<void>;
}

/** Returns a handle on success, or the reason swap is not available here. */
export async function enableSwapFile(dir: string, sizeMiB = 1024): Promise<SwapFile | string> {
  const swap = enableSharedSwapFile(`${sizeMiB}M`, dir);
  if ('skip' in swap) return swap.skip;
  return { remove: async () => swap.off() };
}
