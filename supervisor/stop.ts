// The stop sequence of one run: ask nicely over IPC, SIGTERM the process group, SIGKILL it after
// stop_grace, then SIGKILL every recorded descendant that left the group (setsid). Every individual
// signal is preceded by a start-time check, so a recycled pid is never hit, and death is confirmed
// from /proc, never from kill(pid, 0).
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive, processLiveness, readStat } from './proc.js';
import type { ProcessTree } from './sample.js';

/** How the stop was triggered: operators get a chance at a clean exit first; limit kills do not wait. */
export type StopMode = 'operator' | 'limit';

export interface StopRequest {
  tree: ProcessTree;
  mode: StopMode;
  /** Sent in the IPC `stop` message. */
  reason: string;
  /** stop_grace in ms: time between SIGTERM and SIGKILL. */
  graceMs: number;
  /** Sends `{type:'stop', reason}` over the IPC channel; absent when the run has none. Must not throw. */
  sendStop?: (reason: string) => void;
  /** Called once right before SIGKILL is sent (only when SIGKILL is needed). */
  beforeSigkill?: () => void;
  /** Poll period while waiting for death, ms (default 25). */
  pollMs?: number;
}

export interface StopResult {
  /** Pids still alive after the sequence (must be empty). */
  survivors: number[];
  /** Whether SIGKILL had to be sent. */
  sigkillSent: boolean;
}

/** How long to wait after SIGKILL for the kernel to finish killing everything, ms. */
export const SIGKILL_CONFIRM_MS = 3000;

/** The clean-exit window of an operator stop: min(stop_grace / 2, 2 s). */
export function operatorCleanExitMs(graceMs: number): number {
  return Math.max(0, Math.min(graceMs / 2, 2000));
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // ESRCH: already gone. EPERM cannot happen for our own children; nothing useful to do either way.
  }
}

// The pgid number can only be reused by a new group after every member of ours is gone; if the
// leader's pid now belongs to a different process, our group is empty and must not be signalled.
/** Sends `sig` to the run's process group unless its id was recycled. */
export function signalGroup(tree: ProcessTree, sig: NodeJS.Signals): void {
  const leader = readStat(tree.pgid);
  if (leader && leader.startTime !== tree.leaderStartTime) return;
  signal(-tree.pgid, sig);
}

/** Sends `sig` to one recorded process after checking it is still the same process (pid + start time). */
export function signalIfSame(pid: number, startTime: string, sig: NodeJS.Signals): boolean {
  if (!isAlive(pid, startTime)) return false;
  signal(pid, sig);
  return true;
}

/** Live pids of the tree (walking recorded processes, their children, and the group from a fresh scan). */
export function liveTreePids(tree: ProcessTree, fullScan: boolean): number[] {
  return tree.collect(fullScan ? 0 : undefined).map((member) => member.pid);
}

async function waitForDeath(tree: ProcessTree, timeoutMs: number, pollMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (liveTreePids(tree, false).length === 0 && liveTreePids(tree, true).length === 0) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
  }
}

// SIGSTOP first, in rounds, until no new process appears: a stopped process cannot fork, so the
// SIGKILL that follows reaches every member, including children born a moment earlier.
/** Freezes and then SIGKILLs the whole tree (group + every recorded descendant, identity-checked). */
export function killTree(tree: ProcessTree): void {
  const stopped = new Set<number>();
  signalGroup(tree, 'SIGSTOP');
  for (let round = 0; round < 10; round++) {
    let fresh = 0;
    for (const member of tree.collect(0)) {
      if (stopped.has(member.pid)) continue;
      stopped.add(member.pid);
      fresh++;
      signalIfSame(member.pid, member.startTime, 'SIGSTOP');
    }
    if (fresh === 0) break;
  }
  signalGroup(tree, 'SIGKILL');
  for (const [pid, startTime] of tree.recorded()) signalIfSame(pid, startTime, 'SIGKILL');
}

/** Runs the stop sequence and resolves once every process of the tree is confirmed dead (or with the survivors). */
export async function stopProcessTree(request: StopRequest): Promise<StopResult> {
  const { tree, graceMs } = request;
  const pollMs = request.pollMs ?? 25;
  if (request.sendStop) {
    try {
      request.sendStop(request.reason);
    } catch {
      // The channel may already be closed; signals follow anyway.
    }
  }
  if (request.mode === 'operator' && (await waitForDeath(tree, operatorCleanExitMs(graceMs), pollMs))) {
    return { survivors: [], sigkillSent: false };
  }
  signalGroup(tree, 'SIGTERM');
  for (const [pid, startTime] of tree.recorded()) signalIfSame(pid, startTime, 'SIGTERM');
  if (await waitForDeath(tree, graceMs, pollMs)) return { survivors: [], sigkillSent: false };
  try {
    request.beforeSigkill?.();
  } catch {
    // Diagnostics must never stand between a runaway and its SIGKILL.
  }
  killTree(tree);
  await waitForDeath(tree, SIGKILL_CONFIRM_MS, pollMs);
  const survivors = [...tree.recorded()].filter(([pid, startTime]) => processLiveness(pid, startTime) === 'alive').map(([pid]) => pid);
  for (const pid of liveTreePids(tree, true)) if (!survivors.includes(pid)) survivors.push(pid);
  return { survivors, sigkillSent: true };
}
