// Ground truth for the benchmarks: process liveness and CPU read straight from /proc, polled by the
// harness itself, so no supervisor's own account of a death is trusted.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcStat {
  state: string;
  ppid: number;
  pgid: number;
  cpuSeconds: number;
  startTime: string;
}

const ticksPerSecond = 100;

export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may contain spaces and parentheses; fields resume after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    state: fields[0]!,
    ppid: Number(fields[1]),
    pgid: Number(fields[2]),
    cpuSeconds: (Number(fields[11]) + Number(fields[12])) / ticksPerSecond,
    startTime: fields[19]!,
  };
}

/** Alive = present in /proc and not a zombie (a zombie still answers kill(pid, 0)). */
export function isAlive(pid: number): boolean {
  const stat = readProcStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

const statusLines = { VmRSS: /^VmRSS:\s+(\d+) kB/m, VmSwap: /^VmSwap:\s+(\d+) kB/m };

/** A `kB` line of /proc/<pid>/status in bytes (0 when the process or the line is gone). */
function readStatusBytes(pid: number, field: keyof typeof statusLines): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(statusLines[field].exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

export function readRss(pid: number): number {
  return readStatusBytes(pid, 'VmRSS');
}

export function readSwap(pid: number): number {
  return readStatusBytes(pid, 'VmSwap');
}

/** Every pid in /proc right now. */
export function allPids(): number[] {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number);
}

/** The command line joined with spaces ('' when the process is gone or a kernel thread). */
export function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** The environment as NUL-separated KEY=value text ('' when unreadable). */
export function readEnviron(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Polls every 5 ms until every pid is dead; returns the time of the last death, or undefined on timeout.
 * `onPoll` runs at every poll while something is alive (the swap scenario reads VmSwap there).
 */
export async function waitForDeath(pids: number[], timeoutMs: number, onPoll?: (now: number) => void): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  const remaining = new Set(pids);
  let lastDeath = 0;
  while (remaining.size > 0) {
    onPoll?.(Date.now());
    for (const pid of remaining) {
      if (!isAlive(pid)) {
        remaining.delete(pid);
        lastDeath = Date.now();
      }
    }
    if (remaining.size === 0) break;
    if (Date.now() > deadline) return undefined;
    await sleep(5);
  }
  return lastDeath;
}

/** Kills what a supervisor left behind, so one trial never leaks into the next. */
export function killQuietly(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Descendants of `root` (children, grandchildren, …), by walking every /proc/<pid>/stat ppid link. */
export function descendantsOf(root: number, allPids: () => number[]): number[] {
  const byParent = new Map<number, number[]>();
  for (const pid of allPids()) {
    const stat = readProcStat(pid);
    if (!stat) continue;
    const siblings = byParent.get(stat.ppid) ?? [];
    siblings.push(pid);
    byParent.set(stat.ppid, siblings);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of byParent.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}
