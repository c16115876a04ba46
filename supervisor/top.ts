// `duckvisorctl top`: the Now view in the terminal, like `pm2 monit` or htop. On a TTY it redraws in
// place on the alternate screen (cursor hidden, restored on exit), quits on q or Ctrl-C and follows
// terminal resizes; otherwise it prints one plain snapshot (or one JSON line) per interval.
import type { JobStatus, StatusView } from './control.js';
import { formatBytes, formatDuration } from './units.js';

export interface TopOptions {
  /** One JSON status per line instead of tables (never redrawn in place). */
  json?: boolean;
  /** Refresh period; default 1000 ms. */
  intervalMs?: number;
  out?: NodeJS.WriteStream;
  input?: NodeJS.ReadStream;
  /** Stop after this many snapshots (default: until q, Ctrl-C, SIGINT or SIGTERM). */
  iterations?: number;
}

const liveStates = new Set(['starting', 'running', 'publishing']);

const ansi = {
  altScreenOn: '\x1b[?1049h',
  altScreenOff: '\x1b[?1049l',
  hideCursor: '\x1b[?25l',
  showCursor: '\x1b[?25h',
  home: '\x1b[H',
  clearLine: '\x1b[K',
  clearBelow: '\x1b[J',
  reset: '\x1b[0m',
  bold: '\x1b[1m',
  dim: '\x1b[2m',
  inverse: '\x1b[7m',
  red: '\x1b[31m',
  green: '\x1b[32m',
  yellow: '\x1b[33m',
  blue: '\x1b[34m',
  magenta: '\x1b[35m',
  cyan: '\x1b[36m',
} as const;

/** A text cell and the ANSI colour to draw it in (none in plain mode). */
interface Cell {
  text: string;
  color?: string;
}

/** A bar of `width` cells filled to `fraction` (0..1) with eighth-block precision. */
export function bar(fraction: number, width: number): string {
  if (width <= 0) return '';
  const clamped = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
  const eighths = Math.round(clamped * width * 8);
  const full = Math.floor(eighths / 8);
  const partial = eighths % 8;
  const partials = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
  const body = '█'.repeat(full) + (full < width ? partials[partial]! : '');
  return body + '·'.repeat(Math.max(0, width - [...body].length));
}

function stateColor(state: string | undefined): string | undefined {
  switch (state) {
    case 'running':
    case 'starting':
      return ansi.blue;
    case 'publishing':
      return ansi.magenta;
    case 'succeeded':
      return ansi.green;
    case 'killed':
    case 'failed':
      return ansi.red;
    case 'interrupted':
      return ansi.yellow;
    default:
      return undefined;
  }
}

function fraction(value: number | null | undefined, limit: number | null | undefined): number {
  return value !== null && value !== undefined && limit ? value / limit : 0;
}

function gaugeColor(f: number): string {
  return f >= 0.95 ? ansi.red : f >= 0.8 ? ansi.yellow : ansi.green;
}

function formatCount(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function clock(iso: string | null, now: number): string {
  if (!iso) return '-';
  const at = Date.parse(iso);
  const d = new Date(at);
  const time = d.toTimeString().slice(0, 8);
  return at > now ? `${time} (in ${formatDuration(at - now)})` : time;
}

/** The cells of one job row; bar widths are chosen by the caller to fit the terminal. */
function jobCells(job: JobStatus, now: number, progressWidth: number, rssWidth: number): Cell[] {
  const run = job.run;
  const live = run !== null && liveStates.has(run.state);
  const state = run ? (run.reason ? `${run.state} (${run.reason})` : run.state) : 'never run';
  let progress = '-';
  if (run && run.progress_done !== null) {
    const total = run.progress_total;
    progress = total && total > 0
      ? `${bar(run.progress_done / total, progressWidth)} ${((run.progress_done / total) * 100).toFixed(1).padStart(5)}% ${formatCount(run.progress_done)}/${formatCount(total)}`
      : `${formatCount(run.progress_done)} ${run.progress_unit ?? ''}`.trim();
  }
  const rssValue = live ? job.rss_bytes : run?.peak_rss_bytes ?? null;
  const rssF = fraction(rssValue, job.rss_limit_bytes);
  const rss = job.rss_limit_bytes
    ? `${bar(rssF, rssWidth)} ${formatBytes(rssValue)}/${formatBytes(job.rss_limit_bytes)}`
    : `${formatBytes(rssValue)}/∞`;
  const swapValue = live ? job.swap_bytes : run?.peak_swap_bytes ?? null;
  const next = job.queued ? `${job.queued.attempt > 1 ? 'retry' : 'start'} ${clock(job.queued.next_attempt_at ?? job.queued.queued_at, now)}` : '-';
  return [
    { text: job.job + (job.in_config ? '' : ' (removed)'), color: ansi.bold },
    { text: state, color: stateColor(run?.state) },
    { text: progress, color: live ? ansi.cyan : undefined },
    { text: job.rate !== null ? `${formatCount(job.rate)}/s` : '-' },
    { text: formatDuration(job.eta_ms) },
    { text: rss, color: job.rss_limit_bytes && rssValue !== null ? gaugeColor(rssF) : undefined },
    { text: formatBytes(swapValue), color: swapValue ? ansi.yellow : undefined },
    { text: live ? formatDuration(job.uptime_ms) : run?.ended_at ? `ended ${clock(run.ended_at, now)}` : '-' },
    { text: next },
  ];
}

const headers = ['JOB', 'STATE', 'PROGRESS', 'RATE', 'ETA', 'RSS/LIMIT', 'SWAP', 'UPTIME', 'NEXT'];

function fit(text: string, width: number): string {
  const chars = [...text];
  return chars.length > width ? chars.slice(0, Math.max(0, width - 1)).join('') + '…' : text + ' '.repeat(width - chars.length);
}

/**
 * One screen of `top` as lines of at most `width` visible characters (`color` adds ANSI codes).
 * Pure: the caller passes the status (or the error of the last fetch) and the clock.
 */
export function renderTop(status: StatusView | null, error: string | null, width: number, height: number, now: number, color: boolean): string[] {
  const paint = (cell: Cell, padded: string) => (color && cell.color ? `${cell.color}${padded}${ansi.reset}` : padded);
  const lines: string[] = [];
  const time = new Date(now).toTimeString().slice(0, 8);
  if (status) {
    const d = status.daemon;
    const head = `duckvisord pid ${d.pid} · up ${formatDuration(now - Date.parse(d.started_at))} · ${d.live} live / ${d.concurrency} · ${d.queued} queued${d.shutting_down ? ' · SHUTTING DOWN' : ''}`;
    const right = `${time}  q: quit`;
    const gap = Math.max(1, width - [...head].length - right.length);
    lines.push(paint({ text: '', color: ansi.inverse }, fit(head + ' '.repeat(gap) + right, width)));
  } else {
    lines.push(fit(`duckvisord: waiting for the daemon…  ${time}  q: quit`, width));
  }
  if (error) lines.push(paint({ text: '', color: ansi.red }, fit(`! ${error}`, width)));
  lines.push('');
  if (!status) return lines.slice(0, height);
  // Bars take what the terminal can spare: wide terminals get long bars.
  const progressWidth = Math.max(6, Math.min(24, Math.floor((width - 110) / 2) + 10));
  const rssWidth = Math.max(4, Math.min(12, Math.floor((width - 110) / 4) + 6));
  const rows = status.jobs.map((job) => jobCells(job, now, progressWidth, rssWidth));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => [...row[i]!.text].length)));
  // Shrink the last columns first when the terminal is narrow.
  let total = widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  for (let i = widths.length - 1; i >= 2 && total > width; i -= 1) {
    const cut = Math.min(widths[i]! - headers[i]!.length, total - width);
    widths[i] = widths[i]! - cut;
    total -= cut;
  }
  const renderRow = (cells: Cell[]) => {
    let line = '';
    let used = 0;
    cells.forEach((cell, i) => {
      if (used >= width) return;
      const w = Math.min(widths[i]!, width - used);
      line += paint(cell, fit(cell.text, w)) + (i < cells.length - 1 ? '  ' : '');
      used += w + 2;
    });
    return line.trimEnd();
  };
  lines.push(renderRow(headers.map((text) => ({ text, color: ansi.bold }))));
  const room = height - lines.length - 1;
  for (const row of rows.slice(0, Math.max(0, room))) lines.push(renderRow(row));
  if (rows.length > room && room >= 0) lines.push(fit(`… ${rows.length - room} more job(s); enlarge the terminal`, width));
  const notes = status.jobs.filter((job) => job.run?.status_note).map((job) => `${job.job}: ${job.run!.status_note}`);
  for (const note of notes.slice(0, Math.max(0, height - lines.length - 1))) lines.push(paint({ text: '', color: ansi.dim }, fit(note, width)));
  return lines.slice(0, height);
}

/** Runs the live view until q / Ctrl-C (TTY), SIGINT/SIGTERM, or `iterations` snapshots; resolves with the exit code. */
export async function runTop(fetchStatus: () => Promise<StatusView>, options: TopOptions = {}): Promise<number> {
  const out = options.out ?? process.stdout;
  const input = options.input ?? process.stdin;
  const intervalMs = options.intervalMs ?? 1000;
  const tty = Boolean(out.isTTY) && !options.json;
  let status: StatusView | null = null;
  let error: string | null = null;
  let snapshots = 0;
  let stopped = false;
  let wake: (() => void) | null = null;
  let timer: NodeJS.Timeout | undefined;

  const stop = () => {
    stopped = true;
    wake?.();
  };
  const draw = () => {
    if (!tty || stopped) return;
    const width = out.columns || 120;
    const height = out.rows || 40;
    const lines = renderTop(status, error, width, height, Date.now(), true);
    out.write(ansi.home + lines.map((line) => line + ansi.clearLine).join('\n') + ansi.clearBelow);
  };
  const onKey = (data: Buffer | string) => {
    const text = data.toString();
    if (text.includes('q') || text.includes('Q') || text.includes('\x03') || text.includes('\x04')) stop();
  };
  const onSignal = () => stop();

  const rawCapable = tty && Boolean(input.isTTY) && typeof input.setRawMode === 'function';
  if (tty) out.write(ansi.altScreenOn + ansi.hideCursor);
  if (rawCapable) input.setRawMode(true);
  input.on('data', onKey);
  if (input.isTTY || tty) input.resume();
  out.on('resize', draw);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const restore = () => {
    if (tty) out.write(ansi.reset + ansi.showCursor + ansi.altScreenOff);
  };
  process.on('exit', restore);
  let failedLast = false;
  try {
    while (!stopped) {
      try {
        status = await fetchStatus();
        error = null;
        failedLast = false;
      } catch (caught) {
        error = `cannot read the daemon's status: ${caught instanceof Error ? caught.message : String(caught)}`;
        failedLast = true;
      }
      if (stopped) break;
      snapshots += 1;
      if (tty) draw();
      else if (options.json) out.write(JSON.stringify(error ? { error } : status) + '\n');
      else {
        const lines = renderTop(status, error, 1000, 10_000, Date.now(), false);
        out.write(lines.filter((line, i) => !(i === lines.length - 1 && line === '')).join('\n') + '\n\n');
      }
      if (options.iterations !== undefined && snapshots >= options.iterations) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, intervalMs);
      });
      wake = null;
    }
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', restore);
    out.off('resize', draw);
    input.off('data', onKey);
    if (rawCapable) input.setRawMode(false);
    input.pause();
    restore();
  }
  return failedLast && status === null ? 3 : 0;
}
