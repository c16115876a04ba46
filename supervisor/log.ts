// The daemon's own log: human lines on a terminal, JSON lines for machines, and `<N>` syslog priority
// prefixes when stdout/stderr go to journald (JOURNAL_STREAM set), so `journalctl -p warning` works.
import winston from 'winston';

export type LogFormat = 'human' | 'json';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFields = Record<string, unknown>;

/** The small logging surface the daemon uses; `child` adds fields (job, run) to every line. */
export interface Log {
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Log;
}

export interface LogOptions {
  format?: LogFormat;
  level?: LogLevel;
  /** Defaults to `'JOURNAL_STREAM' in env`. */
  journal?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Where lines go; defaults to stderr so stdout stays free for command output (`--once` summary). */
  stream?: NodeJS.WritableStream;
}

/** syslog priorities as journald reads them from a `<N>` prefix. */
export const syslogPriority: Record<string, number> = { error: 3, warning: 4, info: 6, debug: 7 };

const winstonLevel: Record<LogLevel, string> = { error: 'error', warn: 'warning', info: 'info', debug: 'debug' };

function renderFields(fields: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    parts.push(`${key}=${/[\s"]/.test(text) ? JSON.stringify(text) : text}`);
  }
  return parts.join(' ');
}

/** Builds the daemon logger. */
export function createLog(options: LogOptions = {}): Log {
  const env = options.env ?? process.env;
  const journal = options.journal ?? env.JOURNAL_STREAM !== undefined;
  const format = options.format ?? 'human';
  const prefix = winston.format((info) => {
    const { level, message, timestamp, ...fields } = info as winston.Logform.TransformableInfo & { timestamp?: string };
    const priority = journal ? `<${syslogPriority[level] ?? 6}>` : '';
    let line: string;
    if (format === 'json') {
      line = JSON.stringify({ time: timestamp, level: level === 'warning' ? 'warn' : level, msg: message, ...fields });
    } else {
      const shown = renderFields(fields as Record<string, unknown>);
      const lvl = (level === 'warning' ? 'warn' : level).padEnd(5);
      // journald stamps lines itself; a terminal needs the time.
      const head = journal ? lvl : `${timestamp} ${lvl}`;
      // Each line of a multi-line message gets its own prefix, so journald keeps the priority.
      line = `${head} ${String(message)}${shown ? ' ' + shown : ''}`
        .split('\n')
        .map((part, index) => (index === 0 ? part : '    ' + part))
        .join('\n' + priority);
    }
    (info as Record<symbol, unknown>)[Symbol.for('message')] = priority + line;
    return info;
  });
  const logger = winston.createLogger({
    levels: winston.config.syslog.levels,
    level: winstonLevel[options.level ?? 'info'],
    format: winston.format.combine(winston.format.timestamp(), prefix()),
    transports: [new winston.transports.Stream({ stream: options.stream ?? process.stderr })],
  });
  return wrap(logger, {});
}

function wrap(logger: winston.Logger, base: LogFields): Log {
  const write = (level: LogLevel) => (msg: string, fields?: LogFields) => logger.log(winstonLevel[level], msg, { ...base, ...fields });
  return {
    error: write('error'),
    warn: write('warn'),
    info: write('info'),
    debug: write('debug'),
    child: (fields) => wrap(logger, { ...base, ...fields }),
  };
}

/** A log that drops everything (tests, library use). */
export const silentLog: Log = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child() {
    return silentLog;
  },
};
