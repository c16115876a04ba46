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

/** The numeric fields of /proc/<pid>/stat, parsed straight from bytes into a reused object (no strings). */
export class StatFields {
  pid = 0;
  /** Character code of the state letter (e.g. 90 = 'Z'). */
  state = 0;
  ppid = 0;
  pgrp = 0;
  session = 0;
  majflt = 0;
  utime = 0;
  stime = 0;
  threads = 0;
  /** Field 22, ticks since boot; the same digits as ProcStat.startTime. */
  startTicks = 0;
  /** Field 24, in pages. */
  rssPages = 0;
  /** Field 38, the signal the parent gets at exit; -1 for a thread that is not its process's main thread. Parsed only on request. */
  exitSignal = 0;
}

/** Last field parseStatBytes reads by default (rss); EXIT_SIGNAL_FIELD when the caller must tell threads from processes. */
export const RSS_FIELD = 24;
/** The exit_signal field of /proc/<pid>/stat: -1 only for non-main threads (CLONE_THREAD), whose /proc/<tid> is reachable but unlisted. */
export const EXIT_SIGNAL_FIELD = 38;

const CHAR_SPACE = 32;
const CHAR_MINUS = 45;
const CHAR_ZERO = 48;
const CHAR_NINE = 57;
const CHAR_CLOSE_PAREN = 41;
const CHAR_OPEN_PAREN = 40;
const CHAR_Z = 90;
const CHAR_X = 88;

/** True for the zombie (Z) and dead (X) states of a StatFields.state. */
export function isDeadState(state: number): boolean {
  return state === CHAR_Z || state === CHAR_X;
}

// The sampler reads stat for every process 4×/s; parsing the bytes in place avoids the string, the
// split array and the ProcStat object that parseStat costs (the garbage collector was a tenth of the
// sampler's time). Same rule as parseStat: fields are counted after the LAST ')'.
/** Parses the bytes of /proc/<pid>/stat into `into` (fields up to `lastField`); false when they are malformed (then `into` is undefined). */
export function parseStatBytes(bytes: Uint8Array, length: number, into: StatFields, lastField = RSS_FIELD): boolean {
  let close = length - 1;
  while (close > 0 && bytes[close] !== CHAR_CLOSE_PAREN) close--;
  if (close <= 0) return false;
  let pid = 0;
  for (let i = 0; i < close; i++) {
    const c = bytes[i]!;
    if (c < CHAR_ZERO || c > CHAR_NINE) break;
    pid = pid * 10 + (c - CHAR_ZERO);
  }
  into.pid = pid;
  let at = close + 2; // field 3, the state letter
  if (at >= length) return false;
  into.state = bytes[at]!;
  at++;
  for (let field = 4; field <= lastField; field++) {
    if (at >= length || bytes[at] !== CHAR_SPACE) return false;
    at++;
    let negative = false;
    if (bytes[at] === CHAR_MINUS) {
      negative = true;
      at++;
    }
    let value = 0;
    const start = at;
    while (at < length) {
      const c = bytes[at]!;
      if (c < CHAR_ZERO || c > CHAR_NINE) break;
      value = value * 10 + (c - CHAR_ZERO);
      at++;
    }
    if (at === start) return false;
    if (negative) value = -value;
    switch (field) {
      case 4:
        into.ppid = value;
        break;
      case 5:
        into.pgrp = value;
        break;
      case 6:
        into.session = value;
        break;
      case 12:
        into.majflt = value;
        break;
      case 14:
        into.utime = value;
        break;
      case 15:
        into.stime = value;
        break;
      case 20:
        into.threads = value;
        break;
      case 22:
        into.startTicks = value;
        break;
      case 24:
        into.rssPages = value;
        break;
      case 38:
        into.exitSignal = value;
        break;
      default:
        break;
    }
  }
  return true;
}

/** The comm field (between the first '(' and the last ')') of stat bytes; '' when malformed. */
export function statCommFromBytes(bytes: Buffer, length: number): string {
  const open = bytes.indexOf(CHAR_OPEN_PAREN);
  let close = length - 1;
  while (close > 0 && bytes[close] !== CHAR_CLOSE_PAREN) close--;
  return open >= 0 && open < close ? bytes.toString('latin1', open + 1, close) : '';
}

/** A ProcStat built from parsed fields (for callers that want the object form). */
export function procStatFromFields(fields: StatFields, comm: string): ProcStat {
  return {
    pid: fields.pid,
    comm,
    state: String.fromCharCode(fields.state),
    ppid: fields.ppid,
    pgrp: fields.pgrp,
    session: fields.session,
    majflt: fields.majflt,
    utime: fields.utime,
    stime: fields.stime,
    startTime: String(fields.startTicks),
    threads: fields.threads,
    rss: fields.rssPages * PAGE_SIZE,
  };
}

// Used where no handle is held (beyond the per-tree cap, the group scan): open, read, parse, close.
/** Reads /proc/<pid>/stat into `into` without creating strings; false when the process does not exist. */
export function readStatFields(pid: number, into: StatFields, lastField = RSS_FIELD): boolean {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/stat`, 'r');
  } catch {
    return false;
  }
  try {
    const n = readSync(fd, readBuffer, 0, readBuffer.length, 0);
    return parseStatBytes(readBuffer, n, into, lastField);
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
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

const scanFields = new StatFields();

// The sampler only needs pids per group; parsing pgrp and state from bytes keeps the scan from creating
// a ProcStat, a string and an array for each of the host's processes.
/** Pids of the live (non-zombie) processes of every process group, from one full /proc scan. */
export function scanProcessGroupPids(): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return groups;
  }
  for (const name of entries) {
    const code = name.charCodeAt(0);
    if (code < 48 || code > 57) continue;
    const pid = Number(name);
    if (!readStatFields(pid, scanFields) || isDeadState(scanFields.state)) continue;
    const members = groups.get(scanFields.pgrp);
    if (members) members.push(pid);
    else groups.set(scanFields.pgrp, [pid]);
  }
  return groups;
}

let cachedGroupPids: { at: number; groups: Map<number, number[]> } | null = null;

// Many runs sample at once; one shared scan per `maxAgeMs` keeps the cost independent of the run count.
/** scanProcessGroupPids(), shared between callers for `maxAgeMs` (0: always a fresh scan). */
export function processGroupPidsCached(maxAgeMs: number, now = Date.now()): Map<number, number[]> {
  if (!cachedGroupPids || now - cachedGroupPids.at > maxAgeMs || now < cachedGroupPids.at || maxAgeMs <= 0) {
    cachedGroupPids = { at: now, groups: scanProcessGroupPids() };
  }
  return cachedGroupPids.groups;
}

/** When the scan processGroupPidsCached() last returned was taken (the `now` it was given); -Infinity before the first. */
export function processGroupScanAt(): number {
  return cachedGroupPids ? cachedGroupPids.at : Number.NEGATIVE_INFINITY;
}

/** The unsigned decimal starting at `at` in the first `length` bytes; -1 when no digit is there. */
function unsignedAt(bytes: Uint8Array, at: number, length: number): number {
  let value = 0;
  let i = at;
  for (; i < length; i++) {
    const c = bytes[i]!;
    if (c < CHAR_ZERO || c > CHAR_NINE) break;
    value = value * 10 + (c - CHAR_ZERO);
  }
  return i === at ? -1 : value;
}

/** Value in bytes of a "Name:   N kB" line found by `needle` (which starts with '\n') in the first `length` bytes; -1 when absent. */
function kilobytesInBytes(bytes: Buffer, length: number, needle: Buffer): number {
  const at = bytes.indexOf(needle);
  // indexOf searches the whole buffer; a hit past `length` is a stale byte of an earlier read.
  if (at < 0 || at >= length) return -1;
  let i = at + needle.length;
  while (i < length && (bytes[i] === CHAR_SPACE || bytes[i] === 9)) i++;
  const kilobytes = unsignedAt(bytes, i, length);
  return kilobytes < 0 ? -1 : kilobytes * 1024;
}

const VM_SWAP_NEEDLE = Buffer.from('\nVmSwap:', 'latin1');
const SWAP_TOTAL_NEEDLE = Buffer.from('\nSwapTotal:', 'latin1');
const SWAP_FREE_NEEDLE = Buffer.from('\nSwapFree:', 'latin1');
let meminfoFd = -1;

// `array.length = 0` drops an array's backing store in V8, so a list reset every tick would reallocate
// every tick; this one keeps its storage and only moves its size.
/** A reusable list of pids: clear() keeps the storage, so refilling it per tick allocates nothing. */
export class PidBuffer {
  private readonly pids: number[] = [];
  /** Number of pids in the list. */
  size = 0;

  add(pid: number): void {
    if (this.size < this.pids.length) this.pids[this.size] = pid;
    else this.pids.push(pid);
    this.size++;
  }

  /** The pid at `index` (0 ≤ index < size). */
  at(index: number): number {
    return this.pids[index]!;
  }

  clear(): void {
    this.size = 0;
  }
}

/** Appends the pids of a children file's bytes ("12 34 ") to `into`. */
function parsePidBytes(bytes: Uint8Array, length: number, into: PidBuffer): void {
  let value = 0;
  let digits = 0;
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!;
    if (c >= CHAR_ZERO && c <= CHAR_NINE) {
      value = value * 10 + (c - CHAR_ZERO);
      digits++;
    } else {
      if (digits > 0 && value > 0) into.add(value);
      value = 0;
      digits = 0;
    }
  }
  if (digits > 0 && value > 0) into.add(value);
}

const swapCache = { at: Number.NEGATIVE_INFINITY, used: 0 };

// VmSwap needs /proc/<pid>/status, the most expensive read per process; when no byte of swap is in use
// on the host, every VmSwap is 0 and the sampler can skip status entirely, and while the figure stands
// still, no page of anyone's went out to swap (supervisor/swap-reads.ts). /proc/meminfo stays open and is
// re-read with pread, and the two numbers are parsed from its bytes.
/**
 * Swap in use on the host in bytes (/proc/meminfo SwapTotal - SwapFree; 0 without swap); Infinity when
 * meminfo cannot be read (then nothing may be concluded from it). Shared cache of `maxAgeMs`.
 */
export function hostSwapUsed(maxAgeMs = 200, now = Date.now()): number {
  if (now - swapCache.at <= maxAgeMs && now >= swapCache.at) return swapCache.used;
  if (meminfoFd < 0) meminfoFd = openOrNegative('/proc/meminfo');
  let used = Number.POSITIVE_INFINITY;
  if (meminfoFd >= 0) {
    try {
      const n = readSync(meminfoFd, readBuffer, 0, readBuffer.length, 0);
      const total = kilobytesInBytes(readBuffer, n, SWAP_TOTAL_NEEDLE);
      const free = kilobytesInBytes(readBuffer, n, SWAP_FREE_NEEDLE);
      if (total === 0) used = 0;
      else if (total > 0 && free >= 0) used = Math.max(0, total - free);
    } catch {
      closeQuietly(meminfoFd);
      meminfoFd = -1;
    }
  }
  swapCache.at = now;
  swapCache.used = used;
  return used;
}

/** Whether any swap is in use on the host (hostSwapUsed() > 0, or unknown); shared cache of `maxAgeMs`. */
export function hostSwapInUse(maxAgeMs = 200, now = Date.now()): boolean {
  return hostSwapUsed(maxAgeMs, now) > 0;
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

let loadavgFd = -1;
const loadavgBuffer = Buffer.allocUnsafe(256);

// Every new process and thread takes a pid, and the kernel reports the last pid it handed out as the
// last field of /proc/loadavg ("0.00 0.01 0.05 1/123 4567"), counted in the pid namespace of the reader,
// which holds every descendant of ours. While that number stands still, no process was born anywhere.
/** The last pid allocated on the host (from /proc/loadavg); NaN when it cannot be read. */
export function readPidCursor(): number {
  if (loadavgFd < 0) loadavgFd = openOrNegative('/proc/loadavg');
  if (loadavgFd < 0) return Number.NaN;
  let n: number;
  try {
    n = readSync(loadavgFd, loadavgBuffer, 0, loadavgBuffer.length, 0);
  } catch {
    closeQuietly(loadavgFd);
    loadavgFd = -1;
    return Number.NaN;
  }
  let end = n;
  while (end > 0 && (loadavgBuffer[end - 1]! < CHAR_ZERO || loadavgBuffer[end - 1]! > CHAR_NINE)) end--;
  let start = end;
  while (start > 0 && loadavgBuffer[start - 1]! >= CHAR_ZERO && loadavgBuffer[start - 1]! <= CHAR_NINE) start--;
  if (start === end || start === 0 || loadavgBuffer[start - 1] !== CHAR_SPACE) return Number.NaN;
  let value = 0;
  for (let i = start; i < end; i++) value = value * 10 + (loadavgBuffer[i]! - CHAR_ZERO);
  return value;
}

/** How often the task list of a multi-threaded process is re-read for its children files, ms. */
export const TASK_LIST_MAX_AGE_MS = 2000;

/**
 * How often the children files (and the task list) of a process are read in full while the cursor given to
 * childrenInto stands still, ms. Nothing is born then except by clone3 with set_tid (CRIU restores),
 * which places a pid without moving the cursor: such a child is found this late.
 */
export const QUIET_CHILDREN_READ_MS = 30_000;

/**
 * How often the children files of a process's other threads are read when processes are being born on
 * the host, ms. The main thread's file is read every tick (it is where fork/spawn from the main thread,
 * the common case, lands); a child forked by another thread is found at most this late, or at once
 * through the process-group scan while it stays in the group. On a busy host this is most of the
 * sampler's reads: 50 Node children with ~11 threads each were ~2,200 reads/s at 250 ms.
 */
export const OTHER_THREADS_READ_MS = 1000;

// Opening a /proc file costs a path walk and two extra syscalls; re-reading an fd already open (pread
// at offset 0) costs one, which is what makes sampling 50 runs 4×/s cheap. An open /proc/<pid> fd is
// bound to that very process: once it dies, reads fail, even if the pid is reused, so a held handle
// can never report on a stranger.
/** The /proc files of one process, kept open and re-read. Call close() when the process is forgotten. */
export class ProcHandle {
  private statusFd = -1;
  // Parallel arrays rather than a Map: iterating them per tick creates no entry arrays.
  private readonly taskIds: string[] = [];
  private readonly taskFds: number[] = [];
  private tasksListedAt = Number.NEGATIVE_INFINITY;
  private tasksListedFor = 0;
  /** readPidCursor() taken right before the children files were last read in full, and when. */
  private childrenReadAtCursor = Number.NaN;
  private childrenReadAt = Number.NEGATIVE_INFINITY;
  /** The pid as text, the name of the main thread's task directory (kept: made once, not per tick). */
  private readonly mainTid: string;

  private constructor(
    readonly pid: number,
    private statFd: number,
    private statmFd: number,
  ) {
    this.mainTid = String(pid);
  }

  // statm is opened right after stat, not on first use: a caller reads stat through the new handle at
  // once, and a stat read that succeeds proves the process still held its pid when statm was opened, so
  // both files are bound to the same process (a later open could land on a recycled pid).
  /** Opens the process's stat and statm files; null when the process does not exist. */
  static open(pid: number): ProcHandle | null {
    const fd = openOrNegative(`/proc/${pid}/stat`);
    return fd < 0 ? null : new ProcHandle(pid, fd, openOrNegative(`/proc/${pid}/statm`));
  }

  /**
   * Resident pages from statm, or -1 once the process is gone. statm prints seven numbers; stat formats
   * some fifty and sums the CPU time of every thread, which made it most of the sampler's cost for 50 idle
   * multi-threaded children. statm is also the exact count where stat's rss field is not: on Linux 6.18
   * stat gives the per-CPU counters' approximation (an idle process: stat 26,763 pages, statm and status
   * 26,782; 74 pages apart in a test), on older kernels both give the same figure.
   */
  residentPages(): number {
    if (this.statmFd < 0) return -1;
    let n: number;
    try {
      n = readSync(this.statmFd, readBuffer, 0, 128, 0);
    } catch {
      return -1;
    }
    // "size resident shared ...": the second number.
    let i = 0;
    while (i < n && readBuffer[i] !== CHAR_SPACE) i++;
    return unsignedAt(readBuffer, i + 1, n);
  }

  /** Current stat; null once the process is gone (reaped). */
  stat(): ProcStat | null {
    if (this.statFd < 0) return null;
    const text = preadText(this.statFd);
    return text === null ? null : parseStat(text);
  }

  /** Reads the current stat into `into` without creating strings; false once the process is gone (reaped). */
  readFields(into: StatFields): boolean {
    if (this.statFd < 0) return false;
    try {
      const n = readSync(this.statFd, readBuffer, 0, readBuffer.length, 0);
      return parseStatBytes(readBuffer, n, into);
    } catch {
      return false;
    }
  }

  /** The current comm (process name); '' once the process is gone. */
  comm(): string {
    if (this.statFd < 0) return '';
    try {
      const n = readSync(this.statFd, readBuffer, 0, readBuffer.length, 0);
      return statCommFromBytes(readBuffer, n);
    } catch {
      return '';
    }
  }

  /** VmSwap in bytes (opens status on first use, then parses its bytes in place); 0 when unreadable. */
  swap(): number {
    if (this.statusFd < 0) this.statusFd = openOrNegative(`/proc/${this.pid}/status`);
    if (this.statusFd < 0) return 0;
    try {
      const n = readSync(this.statusFd, readBuffer, 0, readBuffer.length, 0);
      return Math.max(0, kilobytesInBytes(readBuffer, n, VM_SWAP_NEEDLE));
    } catch {
      return 0;
    }
  }

  /** Direct children; the task list is re-read when the thread count changes or every 2 s. */
  children(threads: number, now = Date.now()): number[] {
    const found = new PidBuffer();
    this.childrenInto(threads, now, found);
    const children: number[] = [];
    for (let i = 0; i < found.size; i++) children.push(found.at(i));
    return children;
  }

  /**
   * Appends the direct children's pids to `into` (no intermediate strings or arrays on the common path).
   * `pidCursor` is readPidCursor() taken before this call, or any token that moves whenever a child may
   * have been born (the sampler's comes from supervisor/births.ts): when it equals the one taken before the
   * last full read, no child can be new and the files are not read (the children already found are
   * recorded by the caller). A full read (and a new task list) still happens at least every
   * QUIET_CHILDREN_READ_MS, for pids placed without moving the cursor (clone3 set_tid, as by CRIU).
   * Between full reads only the main thread's file is read (OTHER_THREADS_READ_MS); without a cursor,
   * every thread's file is read.
   */
  childrenInto(threads: number, now: number, into: PidBuffer, pidCursor = Number.NaN): void {
    const quiet = pidCursor === this.childrenReadAtCursor;
    if (quiet && now - this.childrenReadAt <= QUIET_CHILDREN_READ_MS && now >= this.childrenReadAt) return;
    // A new thread changes the count; one that replaced another unseen is what the periodic listing is for.
    const listMaxAge = quiet ? QUIET_CHILDREN_READ_MS : TASK_LIST_MAX_AGE_MS;
    if (threads !== this.tasksListedFor || now - this.tasksListedAt > listMaxAge || now < this.tasksListedAt) this.listTasks(threads, now);
    const allThreads = Number.isNaN(pidCursor) || this.taskIds.length <= 1 || now - this.childrenReadAt >= OTHER_THREADS_READ_MS || now < this.childrenReadAt;
    if (allThreads) {
      // Only a read of every thread's file proves that nothing was born unseen since `pidCursor`.
      this.childrenReadAtCursor = pidCursor;
      this.childrenReadAt = now;
    }
    const mainTid = this.mainTid;
    for (let i = 0; i < this.taskFds.length; i++) {
      if (!allThreads && this.taskIds[i] !== mainTid) continue;
      let n = -1;
      try {
        n = readSync(this.taskFds[i]!, readBuffer, 0, readBuffer.length, 0);
      } catch {
        n = -1;
      }
      if (n < 0 || n === readBuffer.length) {
        // A thread that ended, or a children list over 64 KiB: read it the slow way.
        const slow: number[] = [];
        parsePidList(readProcText(`/proc/${this.pid}/task/${this.taskIds[i]!}/children`), slow);
        for (const pid of slow) into.add(pid);
      } else {
        parsePidBytes(readBuffer, n, into);
      }
    }
  }

  private listTasks(threads: number, now: number): void {
    this.tasksListedAt = now;
    this.tasksListedFor = threads;
    if (threads === 1 && this.taskIds.length === 1 && this.taskIds[0] === this.mainTid) return;
    let tids: string[];
    if (threads === 1) {
      tids = [this.mainTid];
    } else {
      try {
        tids = readdirSync(`/proc/${this.pid}/task`);
      } catch {
        tids = [];
      }
    }
    const wanted = new Set(tids);
    for (let i = this.taskIds.length - 1; i >= 0; i--) {
      if (!wanted.has(this.taskIds[i]!)) {
        closeQuietly(this.taskFds[i]!);
        this.taskIds.splice(i, 1);
        this.taskFds.splice(i, 1);
      }
    }
    for (const tid of tids) {
      if (this.taskIds.includes(tid)) continue;
      const fd = openOrNegative(`/proc/${this.pid}/task/${tid}/children`);
      if (fd >= 0) {
        this.taskIds.push(tid);
        this.taskFds.push(fd);
      }
    }
  }

  /** Closes every fd held for this process. */
  close(): void {
    closeQuietly(this.statFd);
    this.statFd = -1;
    closeQuietly(this.statmFd);
    this.statmFd = -1;
    closeQuietly(this.statusFd);
    this.statusFd = -1;
    for (const fd of this.taskFds) closeQuietly(fd);
    this.taskFds.length = 0;
    this.taskIds.length = 0;
  }
}

/** A process named by pid and start time, which together never match a recycled pid. */
export interface ProcessIdentity {
  pid: number;
  startTime: string;
}

/** The variable every process of a run inherits (extractors/sdk/protocol.ts childEnv.runId). */
export const RUN_ID_VARIABLE = 'DUCKVISOR_RUN_ID';

// Alert hooks receive the run id of the event they report (supervisor/alerts.ts) but are the daemon's
// helpers, not part of the run: a sweep at run end must leave a hook that is still delivering alone.
/** Set only in the environment of alert hooks; a process carrying it is never swept with a run. */
export const ALERT_EVENT_VARIABLE = 'DUCKVISOR_EVENT';

const alertMarker = Buffer.from(`${ALERT_EVENT_VARIABLE}=`, 'latin1');

/** Whether `entry` starts one of the NUL-separated variables of `environ`. */
function hasVariable(environ: Buffer, entry: Buffer): boolean {
  let at = environ.indexOf(entry);
  while (at >= 0) {
    if (at === 0 || environ[at - 1] === 0) return true;
    at = environ.indexOf(entry, at + 1);
  }
  return false;
}

/** The bytes `DUCKVISOR_RUN_ID=<runId>\0`, as they appear in /proc/<pid>/environ. */
function runIdEntry(runId: string): Buffer {
  return Buffer.from(`${RUN_ID_VARIABLE}=${runId}\0`, 'latin1');
}

/** Whether the bytes of a /proc/<pid>/environ carry `DUCKVISOR_RUN_ID=<runId>` exactly (and are not an alert hook's). */
export function environCarriesRunId(environ: Buffer, length: number, runId: string | Buffer): boolean {
  const entry = typeof runId === 'string' ? runIdEntry(runId) : runId;
  const view = length === environ.length ? environ : environ.subarray(0, length);
  return hasVariable(view, entry) && !hasVariable(view, alertMarker);
}

/** Reads /proc/<pid>/environ as bytes (shared buffer, or a fresh one when over 64 KiB); null when unreadable. */
function readEnviron(pid: number): { bytes: Buffer; length: number } | null {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/environ`, 'r');
  } catch {
    return null;
  }
  try {
    let total = 0;
    for (;;) {
      const n = readSync(fd, readBuffer, total, readBuffer.length - total, null);
      if (n === 0) return { bytes: readBuffer, length: total };
      total += n;
      if (total === readBuffer.length) {
        const bytes = readFileSync(`/proc/${pid}/environ`);
        return { bytes, length: bytes.length };
      }
    }
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** True when the live process's environment carries `DUCKVISOR_RUN_ID=<runId>` (inherited by every descendant). */
export function carriesRunId(pid: number, runId: string | Buffer): boolean {
  const environ = readEnviron(pid);
  return environ !== null && environCarriesRunId(environ.bytes, environ.length, runId);
}

const sweepFields = new StatFields();

// A grandchild that calls setsid (or double-forks) before the sampler's first walk is in no recorded
// parent chain and no process group of ours, but it still carries the run id in its environment (which
// /proc/<pid>/environ shows as it was at exec, whatever the process did to its own copy since). This is
// a full /proc scan, so it runs at the end of a run, never per sample; reading environ only for
// processes born no earlier than the run's leader keeps it to a handful of reads on a busy host.
/**
 * Live (non-zombie) processes whose environment carries `DUCKVISOR_RUN_ID=<runId>`, other than this
 * process and alert hooks. With `bornAtOrAfter` (a start time in ticks, as text), older processes are
 * skipped: no process of a run can have started before the run's leader.
 */
export function findRunProcesses(runId: string, bornAtOrAfter?: string | null): ProcessIdentity[] {
  if (runId.length === 0) return [];
  const earliest = bornAtOrAfter === undefined || bornAtOrAfter === null ? -1 : Number(bornAtOrAfter);
  const entry = runIdEntry(runId);
  const found: ProcessIdentity[] = [];
  for (const pid of listPids()) {
    if (pid === process.pid) continue;
    if (!readStatFields(pid, sweepFields) || isDeadState(sweepFields.state)) continue;
    if (Number.isFinite(earliest) && sweepFields.startTicks < earliest) continue;
    const startTicks = sweepFields.startTicks;
    if (!carriesRunId(pid, entry)) continue;
    found.push({ pid, startTime: String(startTicks) });
  }
  return found;
}
