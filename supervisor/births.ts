// Which processes were born on the host since the last look, read at most once per wake-up of the sampling
// clock. The kernel hands out pids in order (the last one given is the pid cursor, readPidCursor), so the
// processes born between two looks are the pids between the two cursors. Reading the stat of just those
// (a few per second on a busy host) tells each tree whether anything was born into it: a process whose
// parent the tree knows, or that is in its process group. Trees that got nothing skip their children files
// and the /proc-wide group scan; on a busy host that is most of the sampler's reads, because the bare
// cursor moves there at every tick for processes that are not ours.
//
// A look is "inconclusive" when the cursor cannot be read, on the first look, after a gap long enough
// for the pids to have wrapped around unseen, or when more pids were handed out than a look reads
// (a fork storm, a wrap-around): a tree whose window contains one falls back to reading everything.
import { readFileSync } from 'node:fs';
import { EXIT_SIGNAL_FIELD, isDeadState, readPidCursor, readStatFields, StatFields } from './proc.js';

/** Most new pids one look reads; more make it inconclusive (reading every tree's children is cheaper then). */
export const MAX_PROBED_PIDS = 256;
/** A look this long after the previous one is inconclusive (the pid space may have wrapped meanwhile), ms. */
export const MAX_LOOK_GAP_MS = 1000;
/** Births kept for trees that look less often than the clock wakes (slow intervals); older ones are dropped. */
const LOG_CAPACITY = 4096;

function readPidMax(): number {
  try {
    const value = Number.parseInt(readFileSync('/proc/sys/kernel/pid_max', 'latin1'), 10);
    return Number.isInteger(value) && value > 1 ? value : 0;
  } catch {
    return 0;
  }
}

/** The processes (not threads) born since some earlier look, with the parent and group they had when seen. */
export class BirthLog {
  /** Counts the looks that found births or were inconclusive; a reader remembers the one it has read up to. */
  generation = 0;
  /** The latest inconclusive generation: a reader that has not read up to it must assume anything was born. */
  private lastInconclusive = 0;
  /** Readers whose last generation is below this lost births to the ring's overwriting. */
  private oldestComplete = 0;
  private lastCursor = Number.NaN;
  private lastLookAt = Number.NEGATIVE_INFINITY;
  private readonly pids = new Int32Array(LOG_CAPACITY);
  private readonly ppids = new Int32Array(LOG_CAPACITY);
  private readonly pgrps = new Int32Array(LOG_CAPACITY);
  private readonly generations = new Float64Array(LOG_CAPACITY);
  /** Entries written so far (the ring holds the last LOG_CAPACITY). */
  private written = 0;
  private readonly fields = new StatFields();

  constructor(
    private readonly readCursor: () => number = readPidCursor,
    private readonly pidMax = readPidMax(),
  ) {}

  /** Reads the births since the previous look into the log (the cursor is read first: later births wait for the next look). */
  look(now: number): void {
    const cursor = this.readCursor();
    const previous = this.lastCursor;
    const gap = now - this.lastLookAt;
    this.lastCursor = cursor;
    this.lastLookAt = now;
    if (Number.isNaN(cursor) || Number.isNaN(previous) || gap > MAX_LOOK_GAP_MS || gap < 0) {
      this.markInconclusive();
      return;
    }
    if (cursor === previous) return;
    let count: number;
    if (cursor > previous) count = cursor - previous;
    else if (this.pidMax > previous) count = this.pidMax - 1 - previous + cursor;
    else count = Number.POSITIVE_INFINITY;
    if (count > MAX_PROBED_PIDS) {
      this.markInconclusive();
      return;
    }
    const generation = ++this.generation;
    let pid = previous;
    for (let i = 0; i < count; i++) {
      pid = pid + 1 >= this.pidMax && this.pidMax > 0 ? 1 : pid + 1;
      const fields = this.fields;
      if (!readStatFields(pid, fields, EXIT_SIGNAL_FIELD) || isDeadState(fields.state) || fields.exitSignal === -1) continue;
      this.append(pid, fields.ppid, fields.pgrp, generation);
    }
  }

  private markInconclusive(): void {
    this.lastInconclusive = ++this.generation;
  }

  private append(pid: number, ppid: number, pgrp: number, generation: number): void {
    const slot = this.written % LOG_CAPACITY;
    if (this.written >= LOG_CAPACITY) this.oldestComplete = Math.max(this.oldestComplete, this.generations[slot]! + 1);
    this.pids[slot] = pid;
    this.ppids[slot] = ppid;
    this.pgrps[slot] = pgrp;
    this.generations[slot] = generation;
    this.written++;
  }

  /** Whether every birth after generation `seen` is in the log (a reader that has seen nothing yet gets false). */
  complete(seen: number): boolean {
    return seen >= this.lastInconclusive && seen + 1 >= this.oldestComplete;
  }

  /**
   * Calls `visit(pid, ppid, pgrp)` for every birth logged after generation `seen`, oldest first. Meaningful
   * only when complete(seen).
   */
  forEachSince(seen: number, visit: (pid: number, ppid: number, pgrp: number) => void): void {
    if (seen >= this.generation) return;
    const first = Math.max(0, this.written - LOG_CAPACITY);
    // Entries are in generation order: walk back to the first one after `seen`, then forward.
    let start = this.written;
    while (start > first && this.generations[(start - 1) % LOG_CAPACITY]! > seen) start--;
    for (let i = start; i < this.written; i++) {
      const slot = i % LOG_CAPACITY;
      visit(this.pids[slot]!, this.ppids[slot]!, this.pgrps[slot]!);
    }
  }
}

/** The process-wide log the sampler reads. */
export const birthLog = new BirthLog();
