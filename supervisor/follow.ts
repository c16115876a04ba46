// `duckvisorctl start JOB --follow`: watches one run until it ends. On a TTY one line is redrawn in
// place (progress bar, rate, ETA, RSS against its limit, uptime); otherwise a plain line is printed
// when the state changes and every few seconds. The exit code tells whether the run succeeded.
import type { JobStatus, StatusView } from './control.js';
import type { RunView } from './history.js';
import { bar } from './top.js';
import { formatBytes, formatDuration } from './units.js';

/** Where followRun reads from: the same /v1 API as every other verb. */
export interface FollowSource {
  /** GET /v1/status */
  status(): Promise<StatusView>;
  /** GET /v1/runs/:id → its `run` */
  run(runId: string): Promise<RunView>;
}

export interface FollowOptions {
  out?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Poll period; default 500 ms. */
  intervalMs?: number;
  /** Non-TTY: print a line at least this often while nothing changes; default 5000 ms. */
  plainEveryMs?: number;
  /** Print only the final run as JSON (`{"run": …}`). */
  json?: boolean;
}

const terminal = new Set(['succeeded', 'failed', 'killed', 'interrupted', 'skipped']);

/** Exit codes: 0 the run succeeded, 1 it ended otherwise, 3 the daemon stopped answering, 130 interrupted. */
export const followExit = { succeeded: 0, notSucceeded: 1, unreachable: 3, interrupted: 130 } as const;

function stateText(run: RunView): string {
  return run.reason ? `${run.state} (${run.reason})` : run.state;
}

function count(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** One status line for a run (with its job's live figures when it is live). */
export function followLine(run: RunView, job: JobStatus | null, barWidth: number): string {
  const parts = [`${run.job} ${run.id}`, stateText(run)];
  const total = run.progress_total;
  if (run.progress_done !== null) {
    const unit = run.progress_unit ? ` ${run.progress_unit}` : '';
    parts.push(total && total > 0
      ? `${bar(run.progress_done / total, barWidth)} ${((run.progress_done / total) * 100).toFixed(1)}% ${count(run.progress_done)}/${count(total)}${unit}`
      : `${count(run.progress_done)}${unit}`);
  }
  if (job && job.run?.id === run.id && !terminal.has(run.state)) {
    if (job.rate !== null) parts.push(`${count(job.rate)}/s`);
    if (job.eta_ms !== null) parts.push(`ETA ${formatDuration(job.eta_ms)}`);
    if (job.rss_bytes !== null) parts.push(`RSS ${formatBytes(job.rss_bytes)}${job.rss_limit_bytes ? `/${formatBytes(job.rss_limit_bytes)}` : ''}`);
    if (job.swap_bytes) parts.push(`swap ${formatBytes(job.swap_bytes)}`);
    if (job.uptime_ms !== null) parts.push(`up ${formatDuration(job.uptime_ms)}`);
  } else if (terminal.has(run.state)) {
    parts.push(`peak RSS ${formatBytes(run.peak_rss_bytes)}`);
    if (run.started_at && run.ended_at) parts.push(`took ${formatDuration(Date.parse(run.ended_at) - Date.parse(run.started_at))}`);
  }
  return parts.join('  ');
}

/** Follows run `runId` until it reaches a terminal state; resolves with the exit code. */
export async function followRun(runId: string, source: FollowSource, options: FollowOptions = {}): Promise<number> {
  const out = options.out ?? process.stdout;
  const intervalMs = options.intervalMs ?? 500;
  const plainEveryMs = options.plainEveryMs ?? 5000;
  const tty = Boolean((out as NodeJS.WriteStream).isTTY) && !options.json;
  let interrupted = false;
  let wake: (() => void) | null = null;
  const onSignal = () => {
    interrupted = true;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  let lastPlain = 0;
  let lastState = '';
  let failures = 0;
  if (tty) out.write('\x1b[?25l');
  try {
    for (;;) {
      let run: RunView | null = null;
      let job: JobStatus | null = null;
      try {
        const status = await source.status();
        job = status.jobs.find((j) => j.run?.id === runId) ?? null;
        run = job?.run ?? (status.jobs.find((j) => j.queued?.id === runId)?.queued ?? null);
        if (!run || terminal.has(run.state)) run = await source.run(runId);
        failures = 0;
      } catch (error) {
        failures += 1;
        if (failures >= 10) {
          if (tty) out.write('\n');
          process.stderr.write(`duckvisorctl: lost the daemon while following run ${runId}: ${error instanceof Error ? error.message : String(error)}\n`);
          return followExit.unreachable;
        }
      }
      if (interrupted) {
        if (tty) out.write('\n');
        if (!options.json) out.write(`stopped following run ${runId}; it goes on (duckvisorctl stop ${runId} stops it)\n`);
        return followExit.interrupted;
      }
      if (run) {
        const done = terminal.has(run.state);
        const width = (out as NodeJS.WriteStream).columns || 100;
        const line = followLine(run, job, Math.max(10, Math.min(30, width - 90)));
        if (tty) out.write(`\r${[...line].slice(0, width - 1).join('')}\x1b[K`);
        else if (!options.json && (done || run.state !== lastState || Date.now() - lastPlain >= plainEveryMs)) {
          out.write(line + '\n');
          lastPlain = Date.now();
        }
        lastState = run.state;
        if (done) {
          if (tty) out.write('\n');
          if (options.json) out.write(JSON.stringify({ run }) + '\n');
          else if (run.detail && run.state !== 'succeeded') out.write(`${run.detail}\n`);
          return run.state === 'succeeded' ? followExit.succeeded : followExit.notSucceeded;
        }
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, intervalMs);
      });
      wake = null;
    }
  } finally {
    process.off('SIGINT', onSignal);
    if (tty) out.write('\x1b[?25h');
  }
}
