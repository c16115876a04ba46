// Live progress of `duckvisord --once` (what `npm start` shows), on stderr next to the log. On a terminal a
// block of one line per live job (state, bar, done/total, rate, ETA, RSS/limit) is redrawn in place every
// 500 ms; the log writes through `logStream`, which clears the block, writes the line and redraws it, so
// the two never mix. Without a terminal, one plain line per live job is printed every `plainEveryMs`.
import { Writable } from 'node:stream';
import type { JobStatus, StatusView } from './control.js';
import { bar } from './top.js';
import { formatBytes, formatDuration } from './units.js';

export interface OnceProgressOptions {
  /** Where the block and the log lines go; default process.stderr. */
  out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Redraw in place (default: `out.isTTY` and TERM is not `dumb`). */
  tty?: boolean;
  /** Redraw period on a terminal; default 500 ms. */
  redrawMs?: number;
  /** Period of the plain lines without a terminal; default 10 s; 0 prints none. */
  plainEveryMs?: number;
  /** Writes one plain line (default: to `out`); the daemon passes its logger so the lines carry its format. */
  plain?: (line: string) => void;
}

/** Default period of the plain progress lines when stderr is not a terminal. */
export const defaultPlainEveryMs = 10_000;

const liveStates = new Set(['starting', 'running', 'publishing']);

function count(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** The parts of one live job's line: [job, state, bar or '', progress text, figures...]. */
function lineParts(job: JobStatus, barWidth: number): { job: string; state: string; bar: string; rest: string[] } {
  const run = job.run!;
  let barText = '';
  let progress = 'no progress reported yet';
  if (run.progress_done !== null) {
    const unit = run.progress_unit ? ` ${run.progress_unit}` : '';
    const total = run.progress_total;
    if (total && total > 0) {
      const fraction = run.progress_done / total;
      barText = barWidth > 0 ? bar(fraction, barWidth) : '';
      progress = `${count(run.progress_done)}/${count(total)}${unit} (${(fraction * 100).toFixed(1)}%)`;
    } else {
      progress = `${count(run.progress_done)}${unit}`;
    }
  }
  const rest = [progress];
  // While publishing, the extractor has exited: its rate, ETA and RSS no longer mean anything.
  if (run.state !== 'publishing') {
    if (job.rate !== null) rest.push(`${count(job.rate)}/s`);
    if (job.eta_ms !== null) rest.push(`ETA ${formatDuration(job.eta_ms)}`);
    rest.push(`RSS ${formatBytes(job.rss_bytes)}/${job.rss_limit_bytes ? formatBytes(job.rss_limit_bytes) : '∞'}`);
    if (job.swap_bytes) rest.push(`swap ${formatBytes(job.swap_bytes)}`);
  }
  return { job: job.job, state: run.state, bar: barText, rest };
}

/** The jobs whose run is live (starting, running, publishing), in status order. */
function liveJobs(status: StatusView): JobStatus[] {
  return status.jobs.filter((job) => job.run !== null && liveStates.has(job.run.state));
}

/**
 * The block for a terminal `width` columns wide: one aligned line per live job, each cut to width - 1 so
 * it never wraps (the redraw counts lines). Empty when nothing is live.
 */
export function progressBlock(status: StatusView, width: number): string[] {
  const jobs = liveJobs(status);
  if (jobs.length === 0) return [];
  const barWidth = Math.max(8, Math.min(30, width - 110));
  const parts = jobs.map((job) => lineParts(job, barWidth));
  const nameWidth = Math.max(...parts.map((p) => p.job.length));
  const stateWidth = Math.max(...parts.map((p) => p.state.length));
  return parts.map((p) => {
    const line = [p.job.padEnd(nameWidth), p.state.padEnd(stateWidth), ...(p.bar ? [p.bar] : []), ...p.rest].join('  ');
    const chars = [...line];
    return chars.length > width - 1 ? chars.slice(0, Math.max(0, width - 2)).join('') + '…' : line;
  });
}

/** One plain line per live job (no bar, no escape codes), for logs and pipes. */
export function progressPlainLines(status: StatusView): string[] {
  return liveJobs(status).map((job) => {
    const p = lineParts(job, 0);
    return `progress: ${p.job} ${p.state}, ${p.rest.join(', ')}`;
  });
}

// Why a class: the block's drawn height, its timers and the log stream that must clear it share state.
/** The --once progress display. Give `logStream` to the logger, then `start` with the daemon's status. */
export class OnceProgress {
  /** The log's destination: passes lines through, clearing and redrawing the block around them on a terminal. */
  readonly logStream: Writable;
  private readonly out: NonNullable<OnceProgressOptions['out']>;
  private readonly tty: boolean;
  private readonly redrawMs: number;
  private readonly plainEveryMs: number;
  private readonly plain: (line: string) => void;
  private status: (() => StatusView) | null = null;
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;
  private redrawQueued = false;

  constructor(options: OnceProgressOptions = {}) {
    this.out = options.out ?? process.stderr;
    this.tty = options.tty ?? (Boolean(this.out.isTTY) && process.env.TERM !== 'dumb');
    this.redrawMs = options.redrawMs ?? 500;
    this.plainEveryMs = options.plainEveryMs ?? defaultPlainEveryMs;
    this.plain = options.plain ?? ((line) => this.out.write(line + '\n'));
    this.logStream = new Writable({
      write: (chunk: Buffer | string, _encoding, callback) => {
        if (this.drawn > 0) this.out.write(this.clearSequence());
        this.drawn = 0;
        this.out.write(chunk);
        this.queueRedraw();
        callback();
      },
    });
  }

  /** Starts drawing (terminal) or printing plain lines (otherwise) from `status`. */
  start(status: () => StatusView): void {
    this.status = status;
    if (this.tty) {
      this.timer = setInterval(() => this.redraw(), this.redrawMs);
    } else if (this.plainEveryMs > 0) {
      this.timer = setInterval(() => this.printPlain(), this.plainEveryMs);
    }
    this.timer?.unref();
  }

  /** Stops and erases the block (before the summary is printed). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.status = null;
    if (this.drawn > 0) this.out.write(this.clearSequence());
    this.drawn = 0;
  }

  private clearSequence(): string {
    // The cursor sits at the start of the line below the block: go up to its first line, erase to the end.
    return `\r\x1b[${this.drawn}A\x1b[J`;
  }

  private read(): StatusView | null {
    try {
      return this.status?.() ?? null;
    } catch {
      // The history may already be closed while the daemon finishes; the next tick (if any) tries again.
      return null;
    }
  }

  private queueRedraw(): void {
    if (!this.tty || !this.status || this.redrawQueued) return;
    this.redrawQueued = true;
    setImmediate(() => {
      this.redrawQueued = false;
      this.redraw();
    });
  }

  private redraw(): void {
    if (!this.status) return;
    const status = this.read();
    if (!status) return;
    const lines = progressBlock(status, this.out.columns || 100);
    const clear = this.drawn > 0 ? this.clearSequence() : '';
    if (lines.length === 0 && clear === '') return;
    this.out.write(clear + lines.map((line) => line + '\n').join(''));
    this.drawn = lines.length;
  }

  private printPlain(): void {
    const status = this.read();
    if (!status) return;
    for (const line of progressPlainLines(status)) this.plain(line);
  }
}
