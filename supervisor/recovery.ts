// What a restarted daemon does about process groups a crashed daemon left behind. This is the only
// place the daemon itself reads /proc or sends signals; live runs are the process layer's (run.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import { findRunProcesses, isAlive, listPids, processStartTime as procStartTime, readStat, type ProcStat } from './proc.js';

/** The start time (field 22 of /proc/<pid>/stat) of a live process, or undefined. */
export function processStartTime(pid: number): string | undefined {
  return procStartTime(pid) ?? undefined;
}

/** True when `pid` runs (not a zombie) and, if given, started at `startTime` — i.e. it is the same process. */
export function isSameProcessAlive(pid: number, startTime?: string | null): boolean {
  return isAlive(pid, startTime);
}

function allProcesses(): ProcStat[] {
  const list: ProcStat[] = [];
  for (const pid of listPids()) {
    const stat = readStat(pid);
    if (stat) list.push(stat);
  }
  return list;
}

/**
 * Every live process that belongs to a run whose leader was `pid` (started at `startTime`): the leader,
 * its process group, processes whose environment carries the run's DUCKVISOR_RUN_ID (which finds a
 * grandchild that left the group with setsid and was re-parented to init after its parent died), and
 * the descendants of any of those via ppid links. Group members must have started no earlier than the
 * leader, so a reused pgid of an unrelated, older process group is not touched.
 */
export function runProcesses(pid: number, startTime: string, runId?: string): number[] {
  const all = allProcesses().filter((p) => p.state !== 'Z' && p.state !== 'X' && p.pid !== process.pid);
  const leaderStart = safeBigInt(startTime);
  const members = new Set<number>();
  // The same environ sweep a live run ends with (proc.ts); no process of the run predates its leader.
  const carryingRunId = new Set(runId === undefined ? [] : findRunProcesses(runId, leaderStart >= 0n ? startTime : null).map((p) => p.pid));
  for (const p of all) {
    if (p.pid === pid && p.startTime === startTime) members.add(p.pid);
    else if (p.pgrp === pid && leaderStart >= 0n && safeBigInt(p.startTime) >= leaderStart) members.add(p.pid);
    else if (carryingRunId.has(p.pid)) members.add(p.pid);
  }
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) {
      if (!members.has(p.pid) && members.has(p.ppid)) {
        members.add(p.pid);
        grew = true;
      }
    }
  }
  return [...members];
}

function safeBigInt(text: string): bigint {
  try {
    return BigInt(text);
  } catch {
    return -1n;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

export interface RecoveryKill {
  /** Processes found and signalled. */
  found: number[];
  /** Still alive after SIGKILL (should be empty). */
  survivors: number[];
}

/** Kills what is left of a crashed daemon's run (see runProcesses): SIGTERM to group and members, `graceMs`, then SIGKILL; confirmed from /proc. */
export async function killLeftoverRun(pid: number, startTime: string, graceMs: number, runId?: string): Promise<RecoveryKill> {
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`refusing to kill process group ${pid}`);
  const found = runProcesses(pid, startTime, runId);
  if (found.length === 0) return { found, survivors: [] };
  const starts = new Map(found.map((p) => [p, processStartTime(p)]));
  const alive = () => [...starts].filter(([p, st]) => isSameProcessAlive(p, st)).map(([p]) => p);
  signal(-pid, 'SIGTERM');
  for (const p of found) signal(p, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive().length > 0 && Date.now() < deadline) await sleep(50);
  // Descendants spawned during the grace period are caught too.
  for (const p of runProcesses(pid, startTime, runId)) if (!starts.has(p)) starts.set(p, processStartTime(p));
  signal(-pid, 'SIGKILL');
  for (const p of alive()) signal(p, 'SIGKILL');
  const killDeadline = Date.now() + 5000;
  while (alive().length > 0 && Date.now() < killDeadline) await sleep(25);
  return { found: [...starts.keys()], survivors: alive() };
}
