// The start queue: persisted in SQLite (a queued start survives a daemon crash), dispatched in due order,
// at most `concurrency` runs live, at most one live run per job. Retries enter the same queue with a
// not-before time and keep their chain id, so they resume from the chain's staging file.
import { randomBytes } from 'node:crypto';
import type { History, QueueRow, RunRow } from './history.js';

/** What the scheduler needs from the daemon. */
export interface SchedulerHost {
  /** Upper bound on live runs (read on every dispatch, so a reload applies at once). */
  concurrency(): number;
  /** Runs currently holding a concurrency slot. */
  liveCount(): number;
  /** True while the job has a run starting, running or publishing. */
  jobIsLive(job: string): boolean;
  jobExists(job: string): boolean;
  /** Files of a run, decided by the daemon (staging per chain, log per run). */
  runPaths(job: string, runId: string, chainId: string): { staging_path: string; log_path: string };
  /** Starts a dequeued run; must move it out of `queued`. */
  launch(run: RunRow): void;
  /** A queued run whose job no longer exists in the config. */
  abandon(run: RunRow, detail: string): void;
  /** A run entered the queue (so queue gauges and the systemd STATUS= line are current at once). */
  queued?(run: RunRow): void;
}

/** A sortable, readable run id: 20261126-230501-123-<job>-a1b2 (job part made filename-safe). */
export function newRunId(job: string, now: number = Date.now()): string {
  const d = new Date(now);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const stamp = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}-${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}-${pad(d.getUTCMilliseconds(), 3)}`;
  return `${stamp}-${safeName(job).slice(0, 40)}-${randomBytes(2).toString('hex')}`;
}

/** A job name as it may appear in a file name: anything outside [A-Za-z0-9._-] becomes '_'. */
export function safeName(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  return safe === '' ? '_' : safe;
}

// Why a class: it owns the dispatch timer and the "is a dispatch already running" guard.
/** The persisted run queue with its dispatch loop. */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private dispatching = false;
  private again = false;

  constructor(
    private readonly history: History,
    private readonly host: SchedulerHost,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Queues the first attempt of a new chain (a `start`); it is dispatched as soon as a slot is free.
   * `cycleId` ties the run to a dependency cycle; its retries inherit it.
   */
  enqueueStart(job: string, detail = 'start requested', cycleId: string | null = null): RunRow {
    const now = this.now();
    const id = newRunId(job, now);
    const run = this.history.transaction(() => {
      const created = this.history.createQueuedRun({ id, job, attempt: 1, chain_id: id, queued_at: now, cycle_id: cycleId, ...this.host.runPaths(job, id, id) }, now);
      this.history.addEvent({ runId: id, job, kind: 'state', message: `queued (${detail})`, at: now });
      return created;
    });
    this.host.queued?.(run);
    this.poke();
    return run;
  }

  /** Queues the next attempt of `previous`'s chain after `delayMs`; marks `previous.next_attempt_at`. */
  enqueueRetry(previous: RunRow, delayMs: number, retryReason: string): RunRow {
    const now = this.now();
    const due = now + delayMs;
    const id = newRunId(previous.job, now);
    const run = this.history.transaction(() => {
      this.history.updateRun(previous.id, { next_attempt_at: due });
      const paths = this.host.runPaths(previous.job, id, previous.chain_id);
      const created = this.history.createQueuedRun(
        { id, job: previous.job, attempt: previous.attempt + 1, chain_id: previous.chain_id, queued_at: now, next_attempt_at: due, cycle_id: previous.cycle_id ?? null, ...paths },
        due,
      );
      this.history.addEvent({
        runId: previous.id,
        job: previous.job,
        kind: 'retry_scheduled',
        message: `retry (${retryReason}) as attempt ${previous.attempt + 1}, run ${id}, at ${new Date(due).toISOString()}`,
        data: { next_run: id, delay_ms: delayMs, reason: retryReason },
      });
      this.history.addEvent({ runId: id, job: previous.job, kind: 'state', message: `queued (retry of ${previous.id} after ${retryReason})`, at: now });
      return created;
    });
    this.host.queued?.(run);
    this.poke();
    return run;
  }

  /** Removes queued runs of `job` (all when job is undefined) from the queue and returns them. */
  takeQueued(job?: string): RunRow[] {
    const taken: RunRow[] = [];
    for (const entry of this.history.queue()) {
      if (job !== undefined && entry.job !== job) continue;
      this.history.dequeue(entry.run_id);
      const run = this.history.getRun(entry.run_id);
      if (run) taken.push(run);
    }
    return taken;
  }

  /** Entries waiting, in dispatch order. */
  pending(): QueueRow[] {
    return this.history.queue();
  }

  /** Dispatches due runs now and re-arms the timer for the next not-before time. */
  poke(): void {
    if (this.stopped) return;
    if (this.dispatching) {
      // Called from inside a dispatch (a launch failed and queued its retry): go round once more.
      this.again = true;
      return;
    }
    this.dispatching = true;
    try {
      do {
        this.again = false;
        this.dispatch();
      } while (this.again && !this.stopped);
    } finally {
      this.dispatching = false;
    }
  }

  /** Stops dispatching (shutdown); the queue itself stays persisted for the next start. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private dispatch(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const now = this.now();
    let nextDue: number | undefined;
    const startedJobs = new Set<string>();
    for (const entry of this.history.queue()) {
      if (entry.not_before > now) {
        nextDue = nextDue === undefined ? entry.not_before : Math.min(nextDue, entry.not_before);
        continue;
      }
      const run = this.history.getRun(entry.run_id);
      if (!run || run.state !== 'queued') {
        this.history.dequeue(entry.run_id);
        continue;
      }
      if (!this.host.jobExists(entry.job)) {
        this.history.dequeue(entry.run_id);
        this.host.abandon(run, `job '${entry.job}' is no longer in the configuration`);
        continue;
      }
      if (startedJobs.has(entry.job) || this.host.jobIsLive(entry.job)) continue;
      if (this.host.liveCount() >= this.host.concurrency()) break;
      this.history.dequeue(entry.run_id);
      startedJobs.add(entry.job);
      this.host.launch(run);
    }
    if (nextDue !== undefined && !this.stopped) {
      this.timer = setTimeout(() => this.poke(), Math.max(0, nextDue - this.now()) + 5);
    }
  }
}
