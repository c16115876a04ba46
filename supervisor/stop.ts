// The stop sequence of one run: ask nicely over IPC, SIGTERM the process group, SIGKILL it after
// stop_grace, then SIGKILL every recorded descendant that left the group (setsid) and every process
// that carries the run's DUCKVISOR_RUN_ID (an escaper the sampler never saw). Every individual signal
// is preceded by a start-time check, so a recycled pid is never hit, and death is confirmed from
// /proc, never from kill(pid, 0).
import { setTimeout as sleep } from 'node:timers/promises';
import { findRunProcesses, isAlive, processLiveness, readStat, type ProcessIdentity } from './proc.js';
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
  /**
   * Sends `{type:'stop', reason}` over the IPC channel; absent when the run has none. Must not throw.
   * Returning false says there was no open channel after all (then an operator stop signals at once);
   * returning nothing counts as sent.
   */
  sendStop?: (reason: string) => boolean | void;
  /** The run's DUCKVISOR_RUN_ID: processes carrying it are signalled with the tree (see findRunProcesses). */
  runId?: string;
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

/** The clean-exit window of an operator stop over IPC: min(stop_grace / 2, 2 s), counted inside stop_grace. */
export function operatorCleanExitMs(graceMs: number): number {
  return Math.max(0, Math.min(graceMs / 2, 2000));
}

/** When a stop sends its signals, in ms after the request. */
export interface StopSchedule {
  sigtermAtMs: number;
  sigkillAtMs: number;
}

// Only a child that can hear the `stop` message gets a quiet window before SIGTERM, and that window is
// part of stop_grace, not added to it: SIGKILL comes stop_grace after the request, whatever the mode.
/** The signal times of a stop: SIGTERM at once unless an operator stop was sent over an open channel; SIGKILL at stop_grace. */
export function stopSchedule(mode: StopMode, graceMs: number, stopSentOverChannel: boolean): StopSchedule {
  const grace = Math.max(0, graceMs);
  const sigtermAtMs = mode === 'operator' && stopSentOverChannel ? Math.min(operatorCleanExitMs(grace), grace) : 0;
  return { sigtermAtMs, sigkillAtMs: grace };
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

// A process may take a second SIGTERM as "exit now, skip the cleanup" (many runtimes do), so a member
// that the group signal already reached is not signalled again.
/** Sends `sig` to one process (pid + start time checked) unless it is in the run's process group. */
export function signalOutsideGroup(tree: ProcessTree, pid: number, startTime: string, sig: NodeJS.Signals): boolean {
  const stat = readStat(pid);
  if (!stat || stat.startTime !== startTime || stat.state === 'Z' || stat.state === 'X' || stat.pgrp === tree.pgid) return false;
  signal(pid, sig);
  return true;
}

/** Live pids of the tree (walking recorded processes, their children, and the group from a fresh scan). */
export function liveTreePids(tree: ProcessTree, fullScan: boolean): number[] {
  return tree.collect(fullScan ? 0 : undefined).map((member) => member.pid);
}

function aliveIdentities(identities: readonly ProcessIdentity[]): ProcessIdentity[] {
  return identities.filter((p) => processLiveness(p.pid, p.startTime) === 'alive');
}

async function waitForDeath(tree: ProcessTree, timeoutMs: number, pollMs: number, others: readonly ProcessIdentity[] = []): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (aliveIdentities(others).length === 0 && liveTreePids(tree, false).length === 0 && liveTreePids(tree, true).length === 0) return true;
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

/** Adds to `into` the live processes carrying `runId` that it does not hold yet; returns the new ones. */
function addRunProcesses(runId: string | undefined, bornAtOrAfter: string, into: ProcessIdentity[]): ProcessIdentity[] {
  if (runId === undefined) return [];
  const known = new Set(into.map((p) => `${p.pid}:${p.startTime}`));
  const fresh = findRunProcesses(runId, bornAtOrAfter).filter((p) => !known.has(`${p.pid}:${p.startTime}`));
  into.push(...fresh);
  return fresh;
}

// Same rounds as killTree: a stopped process cannot fork, so rescanning until nothing new appears
// reaches a process that keeps double-forking.
/** SIGSTOPs, then SIGKILLs every identity (rescanning for `runId` carriers between rounds). */
function killIdentities(identities: ProcessIdentity[], runId: string | undefined, bornAtOrAfter: string): void {
  for (const p of identities) signalIfSame(p.pid, p.startTime, 'SIGSTOP');
  for (let round = 0; round < 10; round++) {
    const fresh = addRunProcesses(runId, bornAtOrAfter, identities);
    if (fresh.length === 0) break;
    for (const p of fresh) signalIfSame(p.pid, p.startTime, 'SIGSTOP');
  }
  for (const p of identities) signalIfSame(p.pid, p.startTime, 'SIGKILL');
}

/** Runs the stop sequence and resolves once every process of the tree is confirmed dead (or with the survivors). */
export async function stopProcessTree(request: StopRequest): Promise<StopResult> {
  const { tree, graceMs, runId } = request;
  const pollMs = request.pollMs ?? 25;
  const requestedAt = Date.now();
  let sentOverChannel = false;
  if (request.sendStop) {
    try {
      sentOverChannel = request.sendStop(request.reason) !== false;
    } catch {
      // The channel may already be closed; signals follow anyway.
    }
  }
  const schedule = stopSchedule(request.mode, graceMs, sentOverChannel);
  if (schedule.sigtermAtMs > 0 && (await waitForDeath(tree, schedule.sigtermAtMs, pollMs))) {
    return { survivors: [], sigkillSent: false };
  }
  // Escapers the sampler never saw (setsid before its first walk) get the same SIGTERM as the tree.
  const carriers: ProcessIdentity[] = [];
  addRunProcesses(runId, tree.leaderStartTime, carriers);
  signalGroup(tree, 'SIGTERM');
  const signalled = new Set<number>();
  for (const [pid, startTime] of tree.recorded()) if (signalOutsideGroup(tree, pid, startTime, 'SIGTERM')) signalled.add(pid);
  for (const p of carriers) if (!signalled.has(p.pid)) signalOutsideGroup(tree, p.pid, p.startTime, 'SIGTERM');
  const graceLeft = Math.max(0, requestedAt + schedule.sigkillAtMs - Date.now());
  if (await waitForDeath(tree, graceLeft, pollMs, carriers)) return { survivors: [], sigkillSent: false };
  try {
    request.beforeSigkill?.();
  } catch {
    // Diagnostics must never stand between a runaway and its SIGKILL.
  }
  killTree(tree);
  killIdentities(carriers, runId, tree.leaderStartTime);
  await waitForDeath(tree, SIGKILL_CONFIRM_MS, pollMs, carriers);
  const survivors = [...tree.recorded()].filter(([pid, startTime]) => processLiveness(pid, startTime) === 'alive').map(([pid]) => pid);
  for (const pid of liveTreePids(tree, true)) if (!survivors.includes(pid)) survivors.push(pid);
  for (const p of aliveIdentities(carriers)) if (!survivors.includes(p.pid)) survivors.push(p.pid);
  return { survivors, sigkillSent: true };
}

export interface SweepRequest {
  /** The run's DUCKVISOR_RUN_ID. */
  runId: string;
  /** Start time (ticks, as text) of the run's leader: older processes are never touched. */
  bornAtOrAfter: string;
  /** stop_grace in ms: time between SIGTERM and SIGKILL. */
  graceMs: number;
  /** Poll period while waiting for death, ms (default 25). */
  pollMs?: number;
}

export interface SweepResult {
  /** Pids found carrying the run id (and signalled). */
  found: number[];
  /** Pids still alive after SIGKILL (must be empty). */
  survivors: number[];
}

// The last word of every run, after its leader exited and any stop finished: one /proc scan for
// processes that still carry the run id. Nearly always it finds none and costs that one scan.
/** Finds the processes still carrying `runId` and ends them: SIGTERM, `graceMs`, SIGKILL, death confirmed from /proc. */
export async function sweepRunProcesses(request: SweepRequest): Promise<SweepResult> {
  const pollMs = request.pollMs ?? 25;
  const carriers: ProcessIdentity[] = [];
  addRunProcesses(request.runId, request.bornAtOrAfter, carriers);
  if (carriers.length === 0) return { found: [], survivors: [] };
  for (const p of carriers) signalIfSame(p.pid, p.startTime, 'SIGTERM');
  const deadline = Date.now() + Math.max(0, request.graceMs);
  while (aliveIdentities(carriers).length > 0 && Date.now() < deadline) await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
  addRunProcesses(request.runId, request.bornAtOrAfter, carriers);
  if (aliveIdentities(carriers).length > 0) {
    killIdentities(carriers, request.runId, request.bornAtOrAfter);
    const killDeadline = Date.now() + SIGKILL_CONFIRM_MS;
    while (aliveIdentities(carriers).length > 0 && Date.now() < killDeadline) await sleep(pollMs);
  }
  return { found: carriers.map((p) => p.pid), survivors: aliveIdentities(carriers).map((p) => p.pid) };
}
