// A supervisor's shutdown is confirmed from /proc, never from the supervisor's own word: every process of
// its tree (snapshotted before the stop) and every process started for the trial must be gone afterwards.
// Survivors are SIGKILLed and reported, so a peer that orphans its children never leaks into the next
// trial (supervisord SIGKILLed in the middle of stopping 50 programs once left all 50 behind).
import { allPids, descendantsOf, isAlive, killQuietly, readEnviron, waitForDeath } from './proc-watch.js';

/** The environment variable every workload of a trial carries (inherited by its descendants, escapees included). */
export const trialEnvKey = 'BENCH_TRIAL';

/** Live processes started for the trial whose folder is `trialDir` (found by their inherited environment). */
export function trialProcesses(trialDir: string): number[] {
  const marker = `${trialEnvKey}=${trialDir}\0`;
  return allPids().filter((pid) => pid !== process.pid && readEnviron(pid).includes(marker) && isAlive(pid));
}

/** `roots` and all their descendants, alive now. */
export function treeOf(roots: number[]): number[] {
  const live = roots.filter(isAlive);
  return [...new Set([...live, ...live.flatMap((root) => descendantsOf(root, allPids))])];
}

/**
 * Runs `stop` (the supervisor's own shutdown), then waits up to `graceMs` for every process of the tree
 * snapshotted before it to die; SIGKILLs and returns those that did not.
 */
export async function stopTree(roots: number[], stop: () => Promise<void>, graceMs = 15_000): Promise<number[]> {
  const tree = treeOf(roots);
  await stop();
  await waitForDeath(tree, graceMs);
  const survivors = tree.filter(isAlive);
  killQuietly(survivors);
  await waitForDeath(survivors, 5_000);
  return survivors;
}

/** Kills whatever the trial left (after its supervisor shut down) and returns how many there were. */
export async function reapTrial(trialDir: string): Promise<number> {
  const left = trialProcesses(trialDir);
  killQuietly(left);
  await waitForDeath(left, 5_000);
  return left.length;
}
