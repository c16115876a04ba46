// journald reads a `<N>` prefix on each stdout/stderr line as that line's syslog priority, so
// `journalctl -p warning` works. This winston format adds it, to every line of a multi-line message.
//
// Use (log.ts): put it LAST, after the format that renders the line:
//   winston.format.combine(winston.format.timestamp(), renderLine(), journaldPriority())
// It is a no-op unless JOURNAL_STREAM is set (systemd sets it when stdout/stderr are the journal).
import winston from 'winston';

/** syslog priorities by winston level (syslog and npm level names both map; unknown levels are info). */
export const journaldPriorities: Readonly<Record<string, number>> = {
  emerg: 0,
  alert: 1,
  crit: 2,
  error: 3,
  warning: 4,
  warn: 4,
  notice: 5,
  info: 6,
  http: 6,
  verbose: 7,
  debug: 7,
  silly: 7,
};

const MESSAGE = Symbol.for('message');

/** Why: prefixing is only right when journald reads the stream; a terminal would show `<6>` noise. */
export function writingToJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.JOURNAL_STREAM);
}

/** `<N>` + line, for every line of `text` (journald stores lines separately and each needs its priority). */
export function prefixLines(text: string, priority: number): string {
  return text
    .split('\n')
    .map((line) => `<${priority}>${line}`)
    .join('\n');
}

export interface JournaldFormatOptions {
  /** Defaults to writingToJournal(process.env) at creation time. */
  enabled?: boolean;
}

/** Why: a winston format the daemon's logger appends so journald gets each line's priority. */
export const journaldPriority = winston.format((info, opts?: unknown) => {
  const options = (opts ?? {}) as JournaldFormatOptions;
  const enabled = options.enabled ?? writingToJournal();
  if (!enabled) return info;
  const record = info as unknown as Record<string | symbol, unknown>;
  const rendered = record[MESSAGE];
  const text = typeof rendered === 'string' ? rendered : String(info.message);
  record[MESSAGE] = prefixLines(text, journaldPriorities[info.level] ?? 6);
  return info;
});
