// Cron schedules per job (croner), with "skip if still running": a tick while the job has a live (or
// queued) run does not start a second one; the daemon records the skip as an event instead.
//
// How the daemon uses it (call sites):
//   const schedules = new JobSchedules(
//     skipIfStillRunning((job) => hasLiveOrQueuedRun(job), (job) => enqueue(job, 'schedule'), (job) => recordSkip(job)),
//     { onError: (job, error) => log.error('schedule tick failed', { job, error: String(error) }) },
//   );
//   for (const job of config.jobs.values()) schedules.set(job.name, job.schedule);   // at start AND on reload
//   for (const name of schedules.jobs()) if (!config.jobs.has(name)) schedules.set(name, undefined); // removed jobs
//   status: schedules.nextRun(job.name)?.toISOString()
//   shutdown: schedules.stopAll()
// Config validation can call validateSchedule(expr) to reject a bad expression with the config's line.
import { Cron } from 'croner';

export interface ScheduleOptions {
  /** IANA zone for all expressions (default: the daemon's local time). */
  timezone?: string;
  /** A tick callback that threw; the schedule keeps running. */
  onError?: (job: string, error: unknown) => void;
}

/** Returns null when `expr` is a usable cron expression, else what is wrong (for config errors). */
export function validateSchedule(expr: string, timezone?: string): string | null {
  const text = expr.trim();
  const fields = text.split(/\s+/).length;
  if (!text.startsWith('@') && (fields < 5 || fields > 6)) {
    return `"${expr}" is not a cron expression: expected 5 fields (minute hour day month weekday), 6 with seconds first, or @hourly/@daily/@weekly/@monthly/@yearly`;
  }
  try {
    const probe = new Cron(text, { paused: true, timezone });
    const next = probe.nextRun();
    probe.stop();
    if (next === null) return `"${expr}" never fires`;
    return null;
  } catch (error) {
    return `"${expr}" is not a valid cron expression: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/**
 * Why: the one place the daemon's "skip if still running" rule lives. Wraps `start` so a tick for a job
 * that still has a live or queued run calls `skipped` instead.
 */
export function skipIfStillRunning(isRunning: (job: string) => boolean, start: (job: string) => void, skipped?: (job: string) => void): (job: string) => void {
  return (job) => {
    if (isRunning(job)) skipped?.(job);
    else start(job);
  };
}

/** Why: owns every job's cron timer, so reloads replace schedules without leaking timers. */
export class JobSchedules {
  readonly #onTick: (job: string) => void;
  readonly #options: ScheduleOptions;
  readonly #timers = new Map<string, { expr: string; cron: Cron }>();

  constructor(onTick: (job: string) => void, options: ScheduleOptions = {}) {
    this.#onTick = onTick;
    this.#options = options;
  }

  /**
   * Sets, replaces or (with undefined) removes a job's schedule. An unchanged expression keeps its timer.
   * Throws an Error naming `jobs.<job>.schedule` for a bad expression (the old schedule then stays).
   */
  set(job: string, expr: string | undefined): void {
    const current = this.#timers.get(job);
    const wanted = expr?.trim() || undefined;
    if (current?.expr === wanted) return;
    if (wanted !== undefined) {
      const problem = validateSchedule(wanted, this.#options.timezone);
      if (problem) throw new Error(`jobs.${job}.schedule: ${problem}`);
    }
    current?.cron.stop();
    this.#timers.delete(job);
    if (wanted === undefined) return;
    const cron = new Cron(wanted, { timezone: this.#options.timezone }, () => {
      try {
        this.#onTick(job);
      } catch (error) {
        this.#options.onError?.(job, error);
      }
    });
    this.#timers.set(job, { expr: wanted, cron });
  }

  /** When the job's schedule fires next, or null when it has none. */
  nextRun(job: string): Date | null {
    return this.#timers.get(job)?.cron.nextRun() ?? null;
  }

  /** The cron expression in force for a job. */
  expression(job: string): string | undefined {
    return this.#timers.get(job)?.expr;
  }

  /** Jobs that have a schedule. */
  jobs(): string[] {
    return [...this.#timers.keys()];
  }

  stopAll(): void {
    for (const { cron } of this.#timers.values()) cron.stop();
    this.#timers.clear();
  }
}
