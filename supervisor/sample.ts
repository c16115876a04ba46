// Sampling one run: its whole process tree (the process group plus every descendant ever seen, so a
// `setsid` escaper reparented to init is still counted and still killed), summed RSS/swap/CPU, the
// major-fault rate, free disk space and host memory pressure. Nothing here spawns a process.
//
// This is the daemon's hot path (every live run, 4×/s): the walk keeps one record per process with its
// /proc files held open, parses their bytes in place and reuses its arrays, so a tick of an idle run costs
// two or three preads and no garbage beyond the Sample it hands out.
import { closeSync, openSync, readSync, statfsSync } from 'node:fs';
import path from 'node:path';
import type { JobSettings, Sample } from './types.js';
import {
  CLOCK_TICKS_PER_SECOND,
  hostSwapUsed,
  isDeadState,
  PAGE_SIZE,
  PidBuffer,
  ProcHandle,
  processGroupPidsCached,
  processGroupScanAt,
  procStatFromFields,
  readChildren,
  readMemory,
  readStat,
  readStatFields,
  StatFields,
  type ProcStat,
} from './proc.js';
import { birthLog } from './births.js';
import { newSwapReadState, noteSwapWalk, swapReadDue } from './swap-reads.js';

/** One live process of a run's tree, as read in one sample. */
export interface TreeMember {
  pid: number;
  startTime: string;
  stat: ProcStat;
  rss: number;
  swap: number;
}

/**
 * How old the shared full /proc scan may be, in ms. It only finds group members no parent link leads to
 * (orphans reparented before the first walk saw them); the walk finds everything else at every tick.
 */
export const GROUP_SCAN_MAX_AGE_MS = 5000;

/**
 * How old the shared group scan may be for a tree that has missed no birth since its last scan (supervisor/
 * births.ts names every process born into its group at once), ms. What is left for the scan to find then
 * took no new pid: a process of the run's session moving into the group with setpgid, or one placed by
 * clone3 with set_tid (CRIU).
 */
export const GROUP_SCAN_QUIET_MAX_AGE_MS = 60_000;

/**
 * How often measure() reads every process's full stat (CPU time, faults, state, thread count), ms. The
 * ticks between read only the resident pages, from statm, unless births into the tree were seen or the
 * tree must be exact at every tick (a fault-rate limit).
 */
export const FULL_STAT_READ_MS = 1000;

/** A light tick that finds a process's resident pages moved by more than this (1 MiB) reads its full stat too. */
const LIGHT_READ_RSS_SLACK_PAGES = Math.ceil((1024 * 1024) / PAGE_SIZE);

/** Most processes per tree whose /proc files are held open; beyond that they are re-opened per read. */
export const MAX_HANDLES_PER_TREE = 256;

/** One process of a tree as the walk knows it: identity, held /proc files, and the fields of its last read. */
interface TrackedProcess {
  readonly pid: number;
  readonly startTicks: number;
  readonly startTime: string;
  handle: ProcHandle | null;
  fields: StatFields;
  swap: number;
  /** Whether `swap` was read for this process at least once (a process new to the tree is read at once). */
  swapRead: boolean;
  /** majflt at the previous Sampler reading; -1 before the first. */
  sampledMajflt: number;
  /** Number of the last walk that reached this process. */
  walk: number;
}

// One look for births per wake-up of the sampling clock instead of one per run: a birth after the look is
// found at the next tick, exactly as with a look per run, which would only be a little later.
let wakeLooked = false;
let insideWake = false;

function lookForBirths(now: number): void {
  if (insideWake && wakeLooked) return;
  birthLog.look(now);
  if (insideWake) wakeLooked = true;
}

// Why the walk's queue holds plain numbers: (pid, source) pairs pushed on one reused array cost nothing
// per tick, where an object per queued pid was a good part of the sampler's garbage.
const FROM_RECORD = 0;
const FROM_PARENT = 1;
const FROM_GROUP = 2;

// The tree is remembered by (pid, start time): a pid can be recycled, a start time cannot repeat.
/** The process tree of one run: leader (= process group id) plus every descendant seen so far. */
export class ProcessTree {
  readonly pgid: number;
  readonly leaderStartTime: string;
  private readonly leaderStartTicks: number;
  private readonly known = new Map<number, string>();
  private readonly tracked = new Map<number, TrackedProcess>();
  private handleCount = 0;
  private walks = 0;
  /** (pid, source) pairs; a stack indexed by queueSize (see PidBuffer for why not push/pop). */
  private readonly queue: number[] = [];
  private queueSize = 0;
  private readonly childPids = new PidBuffer();
  private readonly swapReads = newSwapReadState();
  /** The birthLog generation this tree has read up to (-1: none yet). */
  private birthsSeen = -1;
  /**
   * Stands in for the pid cursor in ProcHandle.childrenInto: it moves only when something may have been
   * born into this tree, so the children files are read only then (and at their safety interval).
   */
  private birthToken = 0;
  /** Set when births may have been missed (first walk, an inconclusive look): a group scan taken at or after it is due. */
  private groupScanWantedSince: number | null = null;
  /** Pids born into the tree in the births being read, so their own children count as ours too. */
  private readonly bornHere = new PidBuffer();
  private bornRelevant = false;
  // Bound once, like queueRecorded.
  private readonly noteBirth = (pid: number, ppid: number, pgrp: number): void => {
    let ours = pgrp === this.pgid || this.known.has(ppid);
    for (let i = 0; !ours && i < this.bornHere.size; i++) ours = this.bornHere.at(i) === ppid;
    if (!ours) return;
    this.bornRelevant = true;
    this.bornHere.add(pid);
    // A group member is ours by the group alone (as with the scan); a child is left to the children files
    // of its parent, which is read through a handle bound to that very process (no recycled-pid mix-up).
    if (pgrp === this.pgid) this.enqueue(pid, FROM_GROUP);
  };
  /** Read every process's full stat at every measure() (set when a fault-rate limit needs the rate per tick). */
  exactEveryTick = false;
  /** When measure() last read every full stat (-Infinity: never). */
  private lastFullWalkAt = Number.NEGATIVE_INFINITY;
  /** The birth token at the previous walk: a walk that sees it moved reads full stats. */
  private birthTokenAtLastWalk = -1;
  /** Whether the last walk read every process's full stat (a walk with births into the tree always does). */
  private lastWalkFull = true;
  /** The live members found by the last walk (reused; the first liveCount are valid until the next walk). */
  private readonly live: TrackedProcess[] = [];
  private liveCount = 0;
  /** Read target of the walk; swapped with a record's fields when the read is kept. */
  private scratch = new StatFields();
  // Bound once: Map.forEach with it visits the recorded pids without an iterator object per walk.
  private readonly queueRecorded = (_startTime: string, pid: number): void => {
    this.enqueue(pid, FROM_RECORD);
  };

  private enqueue(pid: number, source: number): void {
    const queue = this.queue;
    if (this.queueSize + 2 > queue.length) queue.push(0, 0);
    queue[this.queueSize++] = pid;
    queue[this.queueSize++] = source;
  }

  constructor(leaderPid: number, leaderStartTime: string) {
    this.pgid = leaderPid;
    this.leaderStartTime = leaderStartTime;
    this.leaderStartTicks = Number(leaderStartTime);
    this.known.set(leaderPid, leaderStartTime);
  }

  /** Every (pid → start time) recorded and not yet seen gone; includes dead-but-unreaped ones. */
  recorded(): ReadonlyMap<number, string> {
    return this.known;
  }

  private openHandle(pid: number): ProcHandle | null {
    if (this.handleCount >= MAX_HANDLES_PER_TREE) return null;
    const handle = ProcHandle.open(pid);
    if (handle) this.handleCount++;
    return handle;
  }

  private closeHandle(handle: ProcHandle | null): void {
    if (!handle) return;
    handle.close();
    this.handleCount--;
  }

  private forget(pid: number, proc: TrackedProcess | undefined): void {
    if (proc) {
      this.closeHandle(proc.handle);
      proc.handle = null;
      this.tracked.delete(pid);
    }
    if (pid !== this.pgid) this.known.delete(pid);
  }

  /**
   * Walks the tree from every recorded process (children files), plus the process-group members from a
   * shared /proc scan when `groupScanMaxAgeMs` is given, records new members, forgets the gone ones, and
   * leaves the live members in `this.live`. Returns the number of live members.
   */
  private walk(groupScanMaxAgeMs: number | undefined, now: number, allowLight = false): number {
    const walk = ++this.walks;
    // Fresh at every wake-up of the clock (the fastest tick is 50 ms): whether VmSwap is re-read hangs on it.
    const hostSwap = hostSwapUsed(40, now);
    const swapReadAll = swapReadDue(this.swapReads, hostSwap, now);
    let treeSwap = 0;
    const queue = this.queue;
    this.queueSize = 0;
    this.liveCount = 0;
    this.known.forEach(this.queueRecorded);
    // Before any children file: a process born after the look is found at the next tick.
    const pidCursor = this.readBirths(now);
    // A birth into the tree may have changed thread counts and states: read everything then.
    const light = allowLight && pidCursor === this.birthTokenAtLastWalk;
    this.birthTokenAtLastWalk = pidCursor;
    this.lastWalkFull = !light;
    if (groupScanMaxAgeMs !== undefined) {
      const quiet = groupScanMaxAgeMs > 0 && this.groupScanWantedSince === null;
      const groupPids = processGroupPidsCached(quiet ? Math.max(groupScanMaxAgeMs, GROUP_SCAN_QUIET_MAX_AGE_MS) : groupScanMaxAgeMs, now).get(this.pgid);
      if (this.groupScanWantedSince !== null && processGroupScanAt() >= this.groupScanWantedSince) this.groupScanWantedSince = null;
      if (groupPids) for (let i = 0; i < groupPids.length; i++) this.enqueue(groupPids[i]!, FROM_GROUP);
    }
    while (this.queueSize > 0) {
      const source = queue[--this.queueSize]!;
      const pid = queue[--this.queueSize]!;
      let proc = this.tracked.get(pid);
      if (proc && proc.walk === walk) continue;
      if (light && proc && proc.handle && !isDeadState(proc.fields.state)) {
        // A process this tree already knows (whichever way the walk reached it), read through its own
        // handle: its resident pages are all a tick between full reads needs; the rest of its fields stay
        // those of the last full read (a move to another process group is seen there, within a second).
        const pages = proc.handle.residentPages();
        // A process whose memory moves is read in full: its sample may be stored as telling, and should
        // carry its CPU time of now, not of the last full read.
        if (pages >= 0 && Math.abs(pages - proc.fields.rssPages) <= LIGHT_READ_RSS_SLACK_PAGES) {
          proc.walk = walk;
          proc.fields.rssPages = pages;
          treeSwap += this.admit(proc, hostSwap, swapReadAll, now, pidCursor, walk);
          continue;
        }
      }
      const fields = this.scratch;
      // A held handle reads its own process or fails once that process is reaped, never a stranger.
      let handle = proc ? proc.handle : this.openHandle(pid);
      let found = handle ? handle.readFields(fields) : readStatFields(pid, fields);
      if (!found && proc && handle && source !== FROM_RECORD) {
        // The recorded process is gone, but a parent link or the group names its pid: a new process of ours.
        this.closeHandle(handle);
        proc.handle = null;
        handle = this.openHandle(pid);
        found = handle ? handle.readFields(fields) : readStatFields(pid, fields);
        if (handle && found) proc.handle = handle;
      }
      const ownsHandle = handle !== null && (!proc || proc.handle !== handle);
      if (source === FROM_GROUP && found && fields.pgrp !== this.pgid) {
        // The scan is up to 5 s old: the process left the group since.
        if (ownsHandle) this.closeHandle(handle);
        continue;
      }
      if (proc) proc.walk = walk;
      if (found && pid === this.pgid && fields.startTicks !== this.leaderStartTicks) {
        // The leader's pid was recycled: not ours (the leader stays recorded for the group signal).
        if (ownsHandle) this.closeHandle(handle);
        continue;
      }
      const recordedStart = this.known.get(pid);
      const recordedTicks = proc ? proc.startTicks : recordedStart === undefined ? -1 : Number(recordedStart);
      if (!found || (source === FROM_RECORD && fields.startTicks !== recordedTicks)) {
        // Gone, or the pid now belongs to someone else: forget it (the leader stays for the group signal).
        if (ownsHandle) this.closeHandle(handle);
        this.forget(pid, proc);
        continue;
      }
      if (!proc || proc.startTicks !== fields.startTicks) {
        // Found through a parent link or the group: it is ours, even if its pid was recorded for an older process.
        if (proc && proc.handle !== handle) this.closeHandle(proc.handle);
        const startTime = recordedStart !== undefined && Number(recordedStart) === fields.startTicks ? recordedStart : String(fields.startTicks);
        proc = { pid, startTicks: fields.startTicks, startTime, handle, fields: new StatFields(), swap: 0, swapRead: false, sampledMajflt: -1, walk };
        this.tracked.set(pid, proc);
        if (recordedStart !== startTime) this.known.set(pid, startTime);
      }
      // Keep the read: the record takes the scratch fields and gives its old ones back as the next scratch.
      this.scratch = proc.fields;
      proc.fields = fields;
      if (isDeadState(fields.state)) continue;
      // Resident pages from statm on full reads too (see ProcHandle.residentPages): stat's figure may be the
      // kernel's per-CPU approximation, and light reads compare against what the full read recorded.
      const exactPages = handle ? handle.residentPages() : -1;
      if (exactPages >= 0) fields.rssPages = exactPages;
      treeSwap += this.admit(proc, hostSwap, swapReadAll, now, pidCursor, walk);
    }
    noteSwapWalk(this.swapReads, hostSwap, now, swapReadAll, treeSwap);
    return this.liveCount;
  }

  /** Counts a live process of this walk: its swap (re-read when due), its place in `live`, its children queued. Returns its swap. */
  private admit(proc: TrackedProcess, hostSwap: number, swapReadAll: boolean, now: number, pidCursor: number, walk: number): number {
    if (hostSwap === 0) {
      proc.swap = 0;
      proc.swapRead = true;
    } else if (swapReadAll || !proc.swapRead) {
      proc.swap = proc.handle ? proc.handle.swap() : (readMemory(proc.pid)?.swap ?? 0);
      proc.swapRead = true;
    }
    const live = this.live;
    if (this.liveCount < live.length) live[this.liveCount] = proc;
    else live.push(proc);
    this.liveCount++;
    const children = this.childPids;
    children.clear();
    if (proc.handle) proc.handle.childrenInto(proc.fields.threads, now, children, pidCursor);
    else for (const child of readChildren(proc.pid, proc.fields.threads)) children.add(child);
    for (let i = 0; i < children.size; i++) {
      const child = children.at(i);
      const known = this.tracked.get(child);
      if (!known || known.walk !== walk) this.enqueue(child, FROM_PARENT);
    }
    return proc.swap;
  }

  /** Reads the births since this tree's last walk; returns the token to hand to childrenInto. */
  private readBirths(now: number): number {
    lookForBirths(now);
    const log = birthLog;
    if (!log.complete(this.birthsSeen)) {
      this.birthToken++;
      this.groupScanWantedSince = now;
    } else if (this.birthsSeen < log.generation) {
      this.bornHere.clear();
      this.bornRelevant = false;
      log.forEachSince(this.birthsSeen, this.noteBirth);
      if (this.bornRelevant) this.birthToken++;
    }
    this.birthsSeen = log.generation;
    return this.birthToken;
  }

  /**
   * Walks the tree (see the class comment) and returns the live members with their memory. The process
   * group members from the shared /proc scan are included when `groupScanMaxAgeMs` is given (0: a fresh scan).
   */
  collect(groupScanMaxAgeMs?: number): TreeMember[] {
    this.walk(groupScanMaxAgeMs, Date.now());
    return this.members();
  }

  /**
   * Walks the tree like collect() and returns the live processes' totals into `into`, creating no objects.
   * Full stats are read once per FULL_STAT_READ_MS (and at every walk that sees births, or with
   * exactEveryTick); the walks between read resident pages only, so CPU time is up to that old and the
   * fault count is fresh (into.faultsFresh) only on full walks.
   */
  measure(groupScanMaxAgeMs: number | undefined, now: number, into: TreeTotals): void {
    const fullDue = this.exactEveryTick || !(now - this.lastFullWalkAt < FULL_STAT_READ_MS && now >= this.lastFullWalkAt);
    const count = this.walk(groupScanMaxAgeMs, now, !fullDue);
    const full = this.lastWalkFull;
    if (full) this.lastFullWalkAt = now;
    let rssPages = 0;
    let swap = 0;
    let cpuTicks = 0;
    let newFaults = 0;
    for (let i = 0; i < count; i++) {
      const proc = this.live[i]!;
      const fields = proc.fields;
      rssPages += fields.rssPages;
      swap += proc.swap;
      cpuTicks += fields.utime + fields.stime;
      if (!full) continue;
      if (proc.sampledMajflt >= 0 && fields.majflt > proc.sampledMajflt) newFaults += fields.majflt - proc.sampledMajflt;
      proc.sampledMajflt = fields.majflt;
    }
    into.procs = count;
    into.rss = rssPages * PAGE_SIZE;
    into.swap = swap;
    into.cpuTicks = cpuTicks;
    into.newFaults = newFaults;
    into.faultsFresh = full;
  }

  /** The live members found by the last walk, as objects (the comm is read now). */
  members(): TreeMember[] {
    const members: TreeMember[] = [];
    for (let i = 0; i < this.liveCount; i++) {
      const proc = this.live[i]!;
      const comm = proc.handle ? proc.handle.comm() : (readStat(proc.pid)?.comm ?? '');
      const stat = procStatFromFields(proc.fields, comm);
      members.push({ pid: proc.pid, startTime: proc.startTime, stat, rss: stat.rss, swap: proc.swap });
    }
    return members;
  }

  /** Closes the /proc files held for this tree (call once the run is over). */
  dispose(): void {
    for (const proc of this.tracked.values()) {
      this.closeHandle(proc.handle);
      proc.handle = null;
    }
    this.tracked.clear();
    this.live.length = 0;
    this.liveCount = 0;
  }
}

/** The sums of one walk, written into a reused object. */
export interface TreeTotals {
  procs: number;
  rss: number;
  swap: number;
  cpuTicks: number;
  /** Major faults since the previous full measure() of the same processes (0 when !faultsFresh). */
  newFaults: number;
  /** Whether this measure() read the fault counts (a full walk). */
  faultsFresh: boolean;
}

interface DiskProbe {
  at: number;
  value: number;
  /** The existing path statfs is called on (the target or its nearest existing ancestor). */
  probe: string;
  probedAt: number;
}

const FILESYSTEM_CACHE_MS = 200;
/** How long a missing target is measured on its resolved ancestor before the target itself is tried again, ms. */
const MISSING_PATH_RECHECK_MS = 5000;
const diskCache = new Map<string, DiskProbe>();

function statfsFree(probe: string): number | null {
  try {
    const stats = statfsSync(probe);
    return Number(stats.bavail) * Number(stats.bsize);
  } catch {
    return null;
  }
}

// A watched path may not exist yet (a warehouse file before the first publish): measure its nearest
// existing ancestor, which is on the filesystem the file will be created on. That ancestor is remembered
// for 5 s, so a missing file does not cost a thrown ENOENT per tick.
/** Free bytes available to unprivileged users on the filesystem holding `target`; shared cache of 200 ms. */
export function freeBytes(target: string, now = Date.now()): number {
  const cached = diskCache.get(target);
  if (cached && now - cached.at <= FILESYSTEM_CACHE_MS && now >= cached.at) return cached.value;
  if (cached && now - cached.probedAt <= MISSING_PATH_RECHECK_MS && now >= cached.probedAt) {
    const value = statfsFree(cached.probe);
    if (value !== null) {
      cached.at = now;
      cached.value = value;
      return value;
    }
  }
  let probe = path.resolve(target);
  let value = Number.POSITIVE_INFINITY;
  for (;;) {
    const free = statfsFree(probe);
    if (free !== null) {
      value = free;
      break;
    }
    const parent = path.dirname(probe);
    if (parent === probe) break;
    probe = parent;
  }
  diskCache.set(target, { at: now, value, probe, probedAt: now });
  return value;
}

let pressureAt = Number.NEGATIVE_INFINITY;
let pressureValue: number | undefined;
let pressureFd = -1;
let pressureAbsent = false;
const pressureBuffer = Buffer.allocUnsafe(512);
const PRESSURE_NEEDLE = Buffer.from('some avg10=', 'latin1');

/** Parses the decimal number at `at` in `bytes` (digits with an optional fraction); undefined when there is none. */
function decimalAt(bytes: Uint8Array, at: number, length: number): number | undefined {
  let whole = 0;
  let fraction = 0;
  let scale = 1;
  let digits = 0;
  let i = at;
  for (; i < length; i++) {
    const c = bytes[i]!;
    if (c < 48 || c > 57) break;
    whole = whole * 10 + (c - 48);
    digits++;
  }
  if (i < length && bytes[i] === 46) {
    for (i++; i < length; i++) {
      const c = bytes[i]!;
      if (c < 48 || c > 57) break;
      fraction = fraction * 10 + (c - 48);
      scale *= 10;
      digits++;
    }
  }
  return digits === 0 ? undefined : whole + fraction / scale;
}

// avg10 is a 10-second average: reading it more than once a second shows nothing new.
const PRESSURE_CACHE_MS = 1000;

/** /proc/pressure/memory "some avg10" (percent), or undefined where PSI is absent; shared cache of 1 s. */
export function memoryPressure(now = Date.now()): number | undefined {
  if (pressureAbsent) return undefined;
  if (now - pressureAt <= PRESSURE_CACHE_MS && now >= pressureAt) return pressureValue;
  if (pressureFd < 0) {
    try {
      pressureFd = openSync('/proc/pressure/memory', 'r');
    } catch {
      pressureAbsent = true;
      return undefined;
    }
  }
  let value: number | undefined;
  try {
    const n = readSync(pressureFd, pressureBuffer, 0, pressureBuffer.length, 0);
    const at = pressureBuffer.indexOf(PRESSURE_NEEDLE);
    value = at >= 0 && at < n ? decimalAt(pressureBuffer, at + PRESSURE_NEEDLE.length, n) : undefined;
  } catch {
    // PSI can be switched off at runtime (psi=0 on a cgroup): treat as absent from now on.
    closeSync(pressureFd);
    pressureFd = -1;
    pressureAbsent = true;
    return undefined;
  }
  pressureAt = now;
  pressureValue = value;
  return value;
}

/** A sample plus the tree members it was computed from (diagnostics need the biggest ones). */
export interface TreeReading {
  sample: Sample;
  members: TreeMember[];
}

// Per-process fault deltas (not a tree total) so a process that exits does not make the rate negative.
/** Takes the samples of one run; keeps what the major-fault rate needs between ticks. */
export class Sampler {
  private ticks = 0;
  private readonly totals: TreeTotals = { procs: 0, rss: 0, swap: 0, cpuTicks: 0, newFaults: 0, faultsFresh: false };
  /** When the fault counts were last read, and the rate they gave (carried over the walks that do not read them). */
  private faultsAt: number | null = null;
  private faultRate = 0;

  constructor(
    readonly tree: ProcessTree,
    private readonly watchPaths: readonly string[],
  ) {}

  /** Reads the tree now and returns the sample. The process-group scan (shared between runs) refreshes at most every 5 s. */
  sample(now = Date.now()): Sample {
    this.ticks++;
    const totals = this.totals;
    this.tree.measure(GROUP_SCAN_MAX_AGE_MS, now, totals);
    if (totals.faultsFresh) {
      const elapsedSeconds = this.faultsAt === null ? 0 : (now - this.faultsAt) / 1000;
      this.faultRate = elapsedSeconds > 0 ? totals.newFaults / elapsedSeconds : 0;
      this.faultsAt = now;
    }
    let diskFree = Number.POSITIVE_INFINITY;
    for (let i = 0; i < this.watchPaths.length; i++) diskFree = Math.min(diskFree, freeBytes(this.watchPaths[i]!, now));
    const sample: Sample = {
      at: now,
      rss: totals.rss,
      swap: totals.swap,
      cpu: totals.cpuTicks / CLOCK_TICKS_PER_SECOND,
      majflt_rate: this.faultRate,
      disk_free: diskFree,
      procs: totals.procs,
    };
    const pressure = memoryPressure(now);
    if (pressure !== undefined) sample.psi_some_avg10 = pressure;
    return sample;
  }

  /** The members behind the latest sample, as objects (diagnostics); call right after sample(). */
  members(): TreeMember[] {
    return this.tree.members();
  }

  /** Reads the tree now: the sample plus its members as objects. */
  read(now = Date.now()): TreeReading {
    const sample = this.sample(now);
    return { sample, members: this.members() };
  }

  /** Number of samples taken so far. */
  get count(): number {
    return this.ticks;
  }
}

/** Fraction of a limit above which sampling speeds up. */
export const NEAR_LIMIT_FRACTION = 0.8;
/** Fastest sampling interval, ms. */
export const MIN_SAMPLE_INTERVAL_MS = 50;

// Near a limit, a 250 ms tick lets a 100 MB/s leaker overshoot by 25 MB; sampling 4× faster there
// costs little because few runs are ever near a limit at once.
/** The delay before the next sample: sample_interval, or a quarter of it (≥ 50 ms) when a measure is above 80% of its limit. */
export function samplingDelay(settings: Pick<JobSettings, 'limits' | 'sample_interval'>, last: Sample | null): number {
  const base = Math.max(MIN_SAMPLE_INTERVAL_MS, settings.sample_interval);
  if (!last) return base;
  const { rss, swap, disk_free_min, majflt_rate } = settings.limits;
  const near =
    (rss !== undefined && rss > 0 && last.rss > NEAR_LIMIT_FRACTION * rss) ||
    (swap !== undefined && swap > 0 && last.swap > NEAR_LIMIT_FRACTION * swap) ||
    (majflt_rate !== undefined && majflt_rate > 0 && last.majflt_rate > NEAR_LIMIT_FRACTION * majflt_rate) ||
    (disk_free_min !== undefined && disk_free_min > 0 && last.disk_free * NEAR_LIMIT_FRACTION < disk_free_min);
  return near ? Math.max(MIN_SAMPLE_INTERVAL_MS, Math.floor(base / 4)) : base;
}

// Each wake-up of the event loop costs more than the /proc reads it triggers (measured: 50 runs on
// scattered timers used ~2.4% of a core, the same work on one wake-up well under 1%). Putting every
// run's next tick on a shared grid of its interval makes all runs due at once fire in one wake-up.
/** Milliseconds until the next multiple of `delayMs` on the process-wide monotonic clock (at least 1). */
export function alignToGrid(delayMs: number, now = performance.now()): number {
  const wait = Math.ceil(delayMs - (now % delayMs));
  return Math.max(1, wait);
}

/** The first multiple of `delayMs` strictly after `time` (ms on the performance.now() clock). */
export function nextGridPoint(time: number, delayMs: number): number {
  return (Math.floor(time / delayMs) + 1) * delayMs;
}

/** One participant of the shared sampling clock (a live run). */
export interface SamplingTarget {
  /** Takes one sample now; returns the delay in ms to the next one, or a negative number to leave the clock. */
  sampleTick(): number;
}

/** A target's place on the clock; pass it to SamplingClock.remove. */
export interface SamplingSlot {
  readonly target: SamplingTarget;
  /** When the next sample is due, on the performance.now() clock. */
  dueAt: number;
  delayMs: number;
  active: boolean;
}

/** A timer firing this much early still counts as on time (timers are armed from the loop's cached clock). */
const EARLY_TOLERANCE_MS = 2;

// One timer for every live run: each wake-up samples every run due, then arms a single timer for the
// earliest next due time. Runs keep their own intervals (a run near a limit is on a 4× finer grid); the
// grids are multiples of the interval on one clock, so runs of the same interval always share a wake-up,
// and no per-run timer or closure is created per tick.
/** The shared scheduler of all runs' samples. Use the process-wide `samplingClock`. */
export class SamplingClock {
  private slots: SamplingSlot[] = [];
  private activeCount = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerDueAt = Number.POSITIVE_INFINITY;
  private readonly onTimer = () => this.wake();

  /** Puts `target` on the clock; its first sample is due at the next grid point of `delayMs` after now. */
  add(target: SamplingTarget, delayMs: number, now = performance.now()): SamplingSlot {
    const slot: SamplingSlot = { target, dueAt: nextGridPoint(now, delayMs), delayMs, active: true };
    this.slots.push(slot);
    this.activeCount++;
    this.arm(slot.dueAt, now);
    return slot;
  }

  /** Takes `slot` off the clock (safe to call from inside its own sampleTick, and more than once). */
  remove(slot: SamplingSlot): void {
    if (!slot.active) return;
    slot.active = false;
    this.activeCount--;
    if (this.activeCount === 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.timerDueAt = Number.POSITIVE_INFINITY;
      this.slots = [];
    }
  }

  /** Number of targets on the clock. */
  get size(): number {
    return this.activeCount;
  }

  private arm(dueAt: number, now: number): void {
    if (this.timer && this.timerDueAt <= dueAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDueAt = dueAt;
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(dueAt - now)));
  }

  private wake(): void {
    this.timer = null;
    this.timerDueAt = Number.POSITIVE_INFINITY;
    const slots = this.slots;
    let next = Number.POSITIVE_INFINITY;
    let inactive = 0;
    insideWake = true;
    wakeLooked = false;
    try {
      next = this.sampleDue(slots);
    } finally {
      insideWake = false;
      wakeLooked = false;
    }
    for (let i = 0; i < slots.length; i++) if (!slots[i]!.active) inactive++;
    if (inactive > 0 && this.slots === slots) this.slots = slots.filter((slot) => slot.active);
    if (next !== Number.POSITIVE_INFINITY && this.activeCount > 0) this.arm(next, performance.now());
  }

  /** Samples every slot that is due; returns the earliest next due time. */
  private sampleDue(slots: SamplingSlot[]): number {
    let next = Number.POSITIVE_INFINITY;
    // Targets added during the pass are appended and not due yet; the length is read each time on purpose.
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      if (!slot.active) continue;
      const now = performance.now();
      if (slot.dueAt <= now + EARLY_TOLERANCE_MS) {
        let delay: number;
        try {
          delay = slot.target.sampleTick();
        } catch (error) {
          // One run's bug must not stop the sampling of every other run.
          console.error('duckvisor: sampling tick threw:', error);
          delay = slot.delayMs;
        }
        if (!slot.active) continue;
        if (delay < 0) {
          this.remove(slot);
          continue;
        }
        slot.delayMs = Math.max(1, delay);
        slot.dueAt = nextGridPoint(Math.max(now, slot.dueAt), slot.delayMs);
      }
      if (slot.dueAt < next) next = slot.dueAt;
    }
    return next;
  }
}

/** The process-wide sampling clock every run is scheduled on. */
export const samplingClock = new SamplingClock();
