// Reading /proc: the only source of truth about a run's processes. Everything here is synchronous and
// spawns nothing: these reads are tens of microseconds each and sit on the sampling hot path, where the
// promise machinery of fs/promises would cost more than the read itself.
import { closeSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from 'node:fs';

/** Linux USER_HZ: the unit of utime/stime/starttime in /proc/<pid>/stat (100 on every mainstream arch). */
export const CLOCK_TICKS_PER_SECOND = 100;

/** The fields of /proc/<pid>/stat the supervisor uses. Times are in clock ticks. */
export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, T, t, Z (zombie), X (dead), I, ... */
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  majflt: number;
  utime: number;
  stime: number;
  /** Ticks since boot when the process started; with the pid it identifies a process across pid reuse. */
  startTime: string;
  /** Number of threads (field 20). */
  threads: number;
  /** Resident set size in bytes (field 24 × page size; the same counter as VmRSS). */
  rss: number;
}

/** Memory figures from /proc/<pid>/status, in bytes. */
export interface ProcMemory {
  rss: number;
  swap: number;
  threads: number;
}

const readBuffer = Buffer.allocUnsafe(64 * 1024);

// The rss field of stat is in pages; the page size is read once from our own smaps (no getconf spawn).
function detectPageSize(): number {
  try {
    const fd = openSync('/proc/self/smaps', 'r');
    try {
      const n = readSync(fd, readBuffer, 0, 4096, null);
      const match = /KernelPageSize:\s*(\d+) kB/.exec(readBuffer.toString('latin1', 0, n));
      if (match) return Number(match[1]) * 1024;
    } finally {
      closeSync(fd);
    }
  } catch {
    // fall through
  }
  return 4096;
}

/** Bytes per page, for the rss field of /proc/<pid>/stat. */
export const PAGE_SIZE = detectPageSize();

// One open/read/close with a shared buffer: cheaper than readFileSync, which stats the file first.
/** Reads a small /proc file as text; null when it does not exist (the process is gone) or cannot be read. */
export function readProcText(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    let total = 0;
    for (;;) {
      const n = readSync(fd, readBuffer, total, readBuffer.length - total, null);
      if (n === 0) return readBuffer.toString('latin1', 0, total);
      total += n;
      if (total === readBuffer.length) {
        // Rare (a /proc file over 64 KiB): fall back to the general reader.
        closeSync(fd);
        fd = -1;
        return readFileSync(path, 'latin1');
      }
    }
  } catch {
    return null;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

// The comm field may contain spaces and parentheses, so fields are counted after the LAST ')'.
/** Parses the text of /proc/<pid>/stat; null when it is malformed. */
export function parseStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); field n is rest[n - 3].
  if (rest.length < 20) return null;
  return {
    pid: Number(text.slice(0, open - 1)),
    comm: text.slice(open + 1, close),
    state: rest[0]!,
    ppid: Number(rest[1]),
    pgrp: Number(rest[2]),
    session: Number(rest[3]),
    majflt: Number(rest[9]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    startTime: rest[19]!,
    threads: Number(rest[17]),
    rss: Number(rest[21]) * PAGE_SIZE,
  };
}

/** /proc/<pid>/stat of one process; null when it does not exist. */
export function readStat(pid: number): ProcStat | null {
  const text = readProcText(`/proc/${pid}/stat`);
  return text === null ? null : parseStat(text);
}

function kilobytesField(text: string, name: string): number {
  const at = text.indexOf(`\n${name}:`);
  if (at < 0) return 0;
  const value = Number.parseInt(text.slice(at + name.length + 2).trimStart(), 10);
  return Number.isFinite(value) ? value * 1024 : 0;
}

/** Parses VmRSS, VmSwap (bytes) and Threads from the text of /proc/<pid>/status. */
export function parseStatusMemory(text: string): ProcMemory {
  const threadsAt = text.indexOf('\nThreads:');
  const threads = threadsAt < 0 ? 1 : Number.parseInt(text.slice(threadsAt + 9).trimStart(), 10) || 1;
  return { rss: kilobytesField(text, 'VmRSS'), swap: kilobytesField(text, 'VmSwap'), threads };
}

/** RSS, swap and thread count of one process; null when it is gone. Kernel threads and zombies report 0. */
export function readMemory(pid: number): ProcMemory | null {
  const text = readProcText(`/proc/${pid}/status`);
  return text === null ? null : parseStatusMemory(text);
}

function parsePidList(text: string | null, into: number[]): void {
  if (!text) return;
  for (const token of text.split(' ')) {
    if (token.length > 0) {
      const pid = Number(token);
      if (Number.isInteger(pid) && pid > 0) into.push(pid);
    }
  }
}

// /proc/<pid>/task/<tid>/children lists the children forked by that thread, so a multi-threaded
// parent needs every task read; single-threaded ones (the common case) need one read.
/** Direct children of a live process. `threads` (from status) lets single-threaded processes skip the task listing. */
export function readChildren(pid: number, threads = 0): number[] {
  const children: number[] = [];
  if (threads === 1) {
    parsePidList(readProcText(`/proc/${pid}/task/${pid}/children`), children);
    return children;
  }
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return children;
  }
  for (const tid of tasks) parsePidList(readProcText(`/proc/${pid}/task/${tid}/children`), children);
  return children;
}

/** The start time (ticks since boot, as text) of a process, or null when it does not exist. */
export function processStartTime(pid: number): string | null {
  return readStat(pid)?.startTime ?? null;
}

export type ProcessLiveness = 'alive' | 'zombie' | 'gone';

// kill(pid, 0) succeeds on zombies and on a recycled pid; /proc state plus start time does not lie.
/** Whether a process runs: 'zombie' = dead but not yet reaped; 'gone' also when the pid now belongs to another process. */
export function processLiveness(pid: number, startTime?: string | null): ProcessLiveness {
  const stat = readStat(pid);
  if (!stat) return 'gone';
  if (startTime && stat.startTime !== startTime) return 'gone';
  if (stat.state === 'Z' || stat.state === 'X') return 'zombie';
  return 'alive';
}

/** True when the process exists, is not a zombie, and (when given) still has the same start time. */
export function isAlive(pid: number, startTime?: string | null): boolean {
  return processLiveness(pid, startTime) === 'alive';
}

/** Every pid currently in /proc. */
export function listPids(): number[] {
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const name of entries) {
    const code = name.charCodeAt(0);
    if (code >= 48 && code <= 57) pids.push(Number(name));
  }
  return pids;
}

/** Live (non-zombie) processes of every process group, from one full /proc scan. */
export function scanProcessGroups(): Map<number, ProcStat[]> {
  const groups = new Map<number, ProcStat[]>();
  for (const pid of listPids()) {
    const stat = readStat(pid);
    if (!stat || stat.state === 'Z' || stat.state === 'X') continue;
    const members = groups.get(stat.pgrp);
    if (members) members.push(stat);
    else groups.set(stat.pgrp, [stat]);
  }
  return groups;
}

let cachedGroups: { at: number; groups: Map<number, ProcStat[]> } | null = null;

// Many runs sample at once; one shared scan per `maxAgeMs` keeps the cost independent of the run count.
/** scanProcessGroups(), shared between callers for `maxAgeMs`. */
export function processGroupsCached(maxAgeMs: number, now = Date.now()): Map<number, ProcStat[]> {
  if (!cachedGroups || now - cachedGroups.at > maxAgeMs || now < cachedGroups.at) {
    cachedGroups = { at: now, groups: scanProcessGroups() };
  }
  return cachedGroups.groups;
}

let swapCache: { at: number; used: boolean } | null = null;

// VmSwap needs /proc/<pid>/status, the most expensive read per process; when no byte of swap is in use
// on the host, every VmSwap is 0 and the sampler can skip status entirely.
/** Whether any swap is in use on the host (/proc/meminfo SwapTotal - SwapFree > 0); shared cache of `maxAgeMs`. */
export function hostSwapInUse(maxAgeMs = 200, now = Date.now()): boolean {
  if (swapCache && now - swapCache.at <= maxAgeMs && now >= swapCache.at) return swapCache.used;
  const text = readProcText('/proc/meminfo') ?? '';
  const total = kilobytesField(`\n${text}`, 'SwapTotal');
  const free = kilobytesField(`\n${text}`, 'SwapFree');
  swapCache = { at: now, used: total - free > 0 };
  return swapCache.used;
}

/** Writes /proc/<pid>/oom_score_adj; false when the kernel refused (EACCES, gone). */
export function setOomScoreAdj(pid: number, value: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/oom_score_adj`, `${value}\n`);
    return true;
  } catch {
    return false;
  }
}

function preadText(fd: number): string | null {
  try {
    const n = readSync(fd, readBuffer, 0, readBuffer.length, 0);
    return n === readBuffer.length ? null : readBuffer.toString('latin1', 0, n);
  } catch {
    return null;
  }
}

function openOrNegative(path: string): number {
  try {
    return openSync(path, 'r');
  } catch {
    return -1;
  }
}

function closeQuietly(fd: number): void {
  if (fd < 0) return;
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/** How often the task list of a multi-threaded process is re-read for its children files, ms. */
export const TASK_LIST_MAX_AGE_MS = 2000;

// Opening a /proc file costs a path walk and two extra syscalls; re-reading an fd already open (pread
// at offset 0) costs one, which is what makes sampling 50 runs 4×/s cheap. An open /proc/<pid> fd is
// bound to that very process: once it dies, reads fail, even if the pid is reused, so a held handle
// can never report on a stranger.
/** The /proc files of one process, kept open and re-read. Call close() when the process is forgotten. */
export class ProcHandle {
  private statusFd = -1;
  private readonly taskFds = new Map<string, number>();
  private tasksListedAt = Number.NEGATIVE_INFINITY;
  private tasksListedFor = 0;

  private constructor(
    readonly pid: number,
    private statFd: number,
  ) {}

  /** Opens the process's stat file; null when the process does not exist. */
  static open(pid: number): ProcHandle | null {
    const fd = openOrNegative(`/proc/${pid}/stat`);
    return fd < 0 ? null : new ProcHandle(pid, fd);
  }

  /** Current stat; null once the process is gone (reaped). */
  stat(): ProcStat | null {
    if (this.statFd < 0) return null;
    const text = preadText(this.statFd);
    return text === null ? null : parseStat(text);
  }

  /** VmSwap in bytes (opens status on first use); 0 when unreadable. */
  swap(): number {
    if (this.statusFd < 0) this.statusFd = openOrNegative(`/proc/${this.pid}/status`);
    const text = this.statusFd < 0 ? null : preadText(this.statusFd);
    return text === null ? 0 : parseStatusMemory(text).swap;
  }

  /** Direct children; the task list is re-read when the thread count changes or every 2 s. */
  children(threads: number, now = Date.now()): number[] {
    if (threads !== this.tasksListedFor || now - this.tasksListedAt > TASK_LIST_MAX_AGE_MS) this.listTasks(threads, now);
    const children: number[] = [];
    for (const [tid, fd] of this.taskFds) {
      const text = preadText(fd);
      if (text === null) {
        // A thread that ended, or a children list over 64 KiB: read it the slow way.
        parsePidList(readProcText(`/proc/${this.pid}/task/${tid}/children`), children);
      } else {
        parsePidList(text, children);
      }
    }
    return children;
  }

  private listTasks(threads: number, now: number): void {
    this.tasksListedAt = now;
    this.tasksListedFor = threads;
    let tids: string[];
    if (threads === 1) {
      tids = [String(this.pid)];
    } else {
      try {
        tids = readdirSync(`/proc/${this.pid}/task`);
      } catch {
        tids = [];
      }
    }
    const wanted = new Set(tids);
    for (const [tid, fd] of this.taskFds) {
      if (!wanted.has(tid)) {
        closeQuietly(fd);
        this.taskFds.delete(tid);
      }
    }
    for (const tid of tids) {
      if (this.taskFds.has(tid)) continue;
      const fd = openOrNegative(`/proc/${this.pid}/task/${tid}/children`);
      if (fd >= 0) this.taskFds.set(tid, fd);
    }
  }

  /** Closes every fd held for this process. */
  close(): void {
    closeQuietly(this.statFd);
    this.statFd = -1;
    closeQuietly(this.statusFd);
    this.statusFd = -1;
    for (const fd of this.taskFds.values()) closeQuietly(fd);
    this.taskFds.clear();
  }
}
