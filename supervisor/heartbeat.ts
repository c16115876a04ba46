// The two clocks of a run: liveness (when did the child last say anything valid over IPC) and progress
// (when did `done` last advance). They are fed by IPC messages and by stdout lines matching the job's
// progress pattern, so a foreign script printing `[HEARTBEAT] 3/10` is supervised like an extractor.
import type { ChildMessage } from '../extractors/sdk/protocol.js';
import type { Progress } from './types.js';

/** The default `progress_pattern`: the `[HEARTBEAT] <done>/<total>` lines the original Python scripts print. */
export const DEFAULT_PROGRESS_PATTERN = String.raw`\[HEARTBEAT\]\s*(?<done>\d+)\s*/\s*(?<total>\d+)`;

/** Unit recorded for progress parsed from stdout lines (the pattern carries no unit). */
export const STDOUT_PROGRESS_UNIT = 'items';

/** Longest stdout line kept for matching; longer lines are cut (a child printing no newline cannot grow our memory). */
export const MAX_LINE_CHARS = 64 * 1024;

// Config validation and the runtime must agree on what a usable pattern is, so both call this.
/** Compiles a progress pattern; throws an Error saying what is wrong when it is invalid or lacks the `done` group. */
export function compileProgressPattern(source: string): RegExp {
  let pattern: RegExp;
  try {
    pattern = new RegExp(source);
  } catch (error) {
    throw new Error(`progress_pattern ${JSON.stringify(source)} is not a valid regular expression: ${(error as Error).message}`);
  }
  if (!/\(\?<done>/.test(source)) {
    throw new Error(`progress_pattern ${JSON.stringify(source)} has no named group "done"; write e.g. (?<done>\\d+), and optionally (?<total>\\d+)`);
  }
  return pattern;
}

/** Extracts {done, total?} from one line, or null when the line does not match or the numbers are not finite. */
export function parseProgressLine(pattern: RegExp, line: string): { done: number; total?: number } | null {
  const match = pattern.exec(line);
  const groups = match?.groups;
  if (!groups || groups.done === undefined) return null;
  const done = Number(groups.done);
  if (!Number.isFinite(done) || done < 0) return null;
  const total = groups.total === undefined ? undefined : Number(groups.total);
  return total !== undefined && Number.isFinite(total) && total >= 0 ? { done, total } : { done };
}

/**
 * Splits a byte stream into lines (UTF-8). A line longer than `maxChars` is cut and emitted in pieces,
 * or, when `onOversize` is given, dropped whole and reported with its length (IPC messages).
 */
export class LineSplitter {
  private pending = '';
  private dropping = 0;
  private readonly decoder = new TextDecoder();

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxChars = MAX_LINE_CHARS,
    private readonly onOversize?: (chars: number) => void,
  ) {}

  push(chunk: Uint8Array): void {
    this.pending += this.decoder.decode(chunk, { stream: true });
    let newline = this.pending.indexOf('\n');
    while (newline >= 0) {
      const line = this.pending.slice(0, newline);
      this.pending = this.pending.slice(newline + 1);
      if (this.dropping > 0) {
        this.onOversize?.(this.dropping + line.length);
        this.dropping = 0;
      } else if (line.length > this.maxChars && this.onOversize) {
        this.onOversize(line.length);
      } else {
        this.onLine(line.replace(/\r$/, ''));
      }
      newline = this.pending.indexOf('\n');
    }
    if (this.pending.length > this.maxChars) {
      if (this.onOversize) this.dropping += this.pending.length;
      else this.onLine(this.pending.slice(0, this.maxChars));
      this.pending = '';
    }
  }

  /** Emits the last unterminated line, if any. */
  end(): void {
    this.pending += this.decoder.decode();
    if (this.dropping > 0) this.onOversize?.(this.dropping + this.pending.length);
    else if (this.pending.length > 0) this.onLine(this.pending);
    this.pending = '';
    this.dropping = 0;
  }
}

/** What the policy needs from the clocks. Times are ms since epoch. */
export interface ClockState {
  lastMessageAt: number | null;
  helloSeen: boolean;
  progress: Progress | null;
}

/** The liveness and progress clocks of one run. */
export class HeartbeatClock {
  private lastMessage: number | null = null;
  private hello = false;
  private current: Progress | null = null;
  private readonly pattern: RegExp | null;

  /** `progressPattern` is compiled here; an invalid one throws (config validation should have caught it). */
  constructor(progressPattern: string | null) {
    this.pattern = progressPattern ? compileProgressPattern(progressPattern) : null;
  }

  /** A valid IPC message arrived. Returns the new progress when this message advanced or changed it. */
  onMessage(message: ChildMessage, now: number): Progress | null {
    this.lastMessage = now;
    if (message.type === 'hello') this.hello = true;
    if (message.type === 'progress') {
      return this.record(message.done, message.total, message.unit, message.rows, now);
    }
    return null;
  }

  /** One stdout line. Returns the new progress when the line is a progress line. Non-matching lines change nothing. */
  onStdoutLine(line: string, now: number): Progress | null {
    if (!this.pattern) return null;
    const parsed = parseProgressLine(this.pattern, line);
    if (!parsed) return null;
    return this.record(parsed.done, parsed.total, this.current?.unit ?? STDOUT_PROGRESS_UNIT, this.current?.rows, now);
  }

  private record(done: number, total: number | undefined, unit: string, rows: number | undefined, now: number): Progress {
    const advanced = this.current === null || done > this.current.done;
    const next: Progress = { done, unit, advanced_at: advanced ? now : this.current!.advanced_at };
    if (total !== undefined) next.total = total;
    if (rows !== undefined) next.rows = rows;
    this.current = next;
    return next;
  }

  /** The clocks as the policy reads them. */
  state(): ClockState {
    return { lastMessageAt: this.lastMessage, helloSeen: this.hello, progress: this.current };
  }
}
