// Sampling one run: its whole process tree (the process group plus every descendant ever seen, so a
// `setsid` escaper reparented to init is still counted and still killed), summed RSS/swap/CPU, the
// major-fault rate, free disk space and host memory pressure. Nothing here spawns a process.
import { statfsSync } from 'node:fs';
import path from 'node:path';
import type { JobSettings, Sample } from './types.js';
import {
  CLOCK_TICKS_PER_SECOND,
  hostSwapInUse,
  processGroupsCached,
  ProcHandle,
  readChildren,
  readMemory,
  readProcText,
  readStat,
  type ProcStat,
} from './proc.js';

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

/** Most processes per tree whose /proc files are held open; beyond that they are re-opened per read. */
export const MAX_HANDLES_PER_TREE = 256;

// The tree is remembered by (pid, start time): a pid can be recycled, a start time cannot repeat.
/** The process tree of one run: leader (= process group id) plus every descendant seen so far. */
export class ProcessTree {
  readonly pgid: number;
  readonly leaderStartTime: string;
  private readonly known = new Map<number, string>();
  private readonly handles = new Map<number, ProcHandle>();

  constructor(leaderPid: number, leaderStartTime: string) {
    this.pgid = leaderPid;
    this.leaderStartTime = leaderStartTime;
    this.known.set(leaderPid, leaderStartTime);
  }

  /** Every (pid → start time) recorded and not yet seen gone; includes dead-but-unreaped ones. */
  recorded(): ReadonlyMap<number, string> {
    return this.known;
  }

  private statOf(pid: number): { stat: ProcStat | null; handle: ProcHandle | null } {
    let handle = this.handles.get(pid) ?? null;
    if (!handle && this.handles.size < MAX_HANDLES_PER_TREE) {
      handle = ProcHandle.open(pid);
      if (handle) this.handles.set(pid, handle);
    }
    return { stat: handle ? handle.stat() : readStat(pid), handle };
  }

  private forgetHandle(pid: number): void {
    this.handles.get(pid)?.close();
    this.handles.delete(pid);
  }

  /**
   * Walks the tree from every recorded process (children files), plus the process-group members from a
   * shared /proc scan when `groupScanMaxAgeMs` is given, records new members, forgets the gone ones, and
   * returns the live members with their memory.
   */
  collect(groupScanMaxAgeMs?: number): TreeMember[] {
    const members: TreeMember[] = [];
    const swapInUse = hostSwapInUse();
    const visited = new Set<number>();
    const now = Date.now();
    type Source = 'recorded' | 'child' | 'group';
    const queue: Array<{ pid: number; source: Source }> = [];
    for (const pid of this.known.keys()) queue.push({ pid, source: 'recorded' });
    if (groupScanMaxAgeMs !== undefined) {
      for (const stat of processGroupsCached(groupScanMaxAgeMs).get(this.pgid) ?? []) queue.push({ pid: stat.pid, source: 'group' });
    }
    while (queue.length > 0) {
      const { pid, source } = queue.pop()!;
      if (visited.has(pid)) continue;
      let { stat, handle } = this.statOf(pid);
      const recordedStart = this.known.get(pid);
      if (stat && recordedStart !== undefined && stat.startTime !== recordedStart && source !== 'recorded') {
        // A held handle belongs to the old process; the pid now names a new one found through a parent link or the group.
        this.forgetHandle(pid);
        ({ stat, handle } = this.statOf(pid));
      }
      if (source === 'group' && stat && stat.pgrp !== this.pgid) continue; // the scan is up to 2 s old
      visited.add(pid);
      if (stat && pid === this.pgid && stat.startTime !== this.leaderStartTime) continue; // leader's pid recycled
      if (!stat || (source === 'recorded' && stat.startTime !== recordedStart)) {
        // Gone, or the pid now belongs to someone else: forget it (the leader stays for the group signal).
        this.forgetHandle(pid);
        if (pid !== this.pgid) this.known.delete(pid);
        continue;
      }
      // Found through a parent link or the group: it is ours, even if its pid was recorded for an older process.
      if (recordedStart !== stat.startTime) this.known.set(pid, stat.startTime);
      if (stat.state === 'Z' || stat.state === 'X') continue;
      const swap = swapInUse ? (handle ? handle.swap() : (readMemory(pid)?.swap ?? 0)) : 0;
      members.push({ pid, startTime: stat.startTime, stat, rss: stat.rss, swap });
      for (const child of handle ? handle.children(stat.threads, now) : readChildren(pid, stat.threads)) {
        if (!visited.has(child)) queue.push({ pid: child, source: 'child' });
      }
    }
    return members;
  }

  /** Closes the /proc files held for this tree (call once the run is over). */
  dispose(): void {
    for (const handle of this.handles.values()) handle.close();
    this.handles.clear();
  }
}

interface CachedNumber {
  at: number;
  value: number;
}

const FILESYSTEM_CACHE_MS = 200;
const diskCache = new Map<string, CachedNumber>();

// A watched path may not exist yet (a warehouse file before the first publish): measure its nearest
// existing ancestor, which is on the filesystem the file will be created on.
/** Free bytes available to unprivileged users on the filesystem holding `target`; shared cache of 200 ms. */
export function freeBytes(target: string, now = Date.now()): number {
  const cached = diskCache.get(target);
  if (cached && now - cached.at <= FILESYSTEM_CACHE_MS && now >= cached.at) return cached.value;
  let probe = path.resolve(target);
  let value = Number.POSITIVE_INFINITY;
  for (;;) {
    try {
      const stats = statfsSync(probe);
      value = Number(stats.bavail) * Number(stats.bsize);
      break;
    } catch {
      const parent = path.dirname(probe);
      if (parent === probe) break;
      probe = parent;
    }
  }
  diskCache.set(target, { at: now, value });
  return value;
}

let pressureCache: { at: number; value: number | undefined } | null = null;
let pressureAbsent = false;

/** /proc/pressure/memory "some avg10" (percent), or undefined where PSI is absent; shared cache of 200 ms. */
export function memoryPressure(now = Date.now()): number | undefined {
  if (pressureAbsent) return undefined;
  if (pressureCache && now - pressureCache.at <= FILESYSTEM_CACHE_MS && now >= pressureCache.at) return pressureCache.value;
  const text = readProcText('/proc/pressure/memory');
  if (text === null) {
    pressureAbsent = true;
    return undefined;
  }
  const match = /some avg10=([\d.]+)/.exec(text);
  const value = match ? Number(match[1]) : undefined;
  pressureCache = { at: now, value };
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
  private previousFaults = new Map<string, number>();
  private previousAt: number | null = null;
  private ticks = 0;

  constructor(
    readonly tree: ProcessTree,
    private readonly watchPaths: readonly string[],
  ) {}

  /** Reads the tree now. The process-group scan (shared between runs) refreshes at most every 5 s. */
  read(now = Date.now()): TreeReading {
    this.ticks++;
    const members = this.tree.collect(GROUP_SCAN_MAX_AGE_MS);
    let rss = 0;
    let swap = 0;
    let ticks = 0;
    let newFaults = 0;
    const faults = new Map<string, number>();
    for (const member of members) {
      rss += member.rss;
      swap += member.swap;
      ticks += member.stat.utime + member.stat.stime;
      const key = `${member.pid}:${member.startTime}`;
      faults.set(key, member.stat.majflt);
      const before = this.previousFaults.get(key);
      if (before !== undefined && member.stat.majflt > before) newFaults += member.stat.majflt - before;
    }
    const elapsedSeconds = this.previousAt === null ? 0 : (now - this.previousAt) / 1000;
    this.previousFaults = faults;
    this.previousAt = now;
    let diskFree = Number.POSITIVE_INFINITY;
    for (const watched of this.watchPaths) diskFree = Math.min(diskFree, freeBytes(watched, now));
    const sample: Sample = {
      at: now,
      rss,
      swap,
      cpu: ticks / CLOCK_TICKS_PER_SECOND,
      majflt_rate: elapsedSeconds > 0 ? newFaults / elapsedSeconds : 0,
      disk_free: diskFree,
      procs: members.length,
    };
    const pressure = memoryPressure(now);
    if (pressure !== undefined) sample.psi_some_avg10 = pressure;
    return { sample, members };
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
