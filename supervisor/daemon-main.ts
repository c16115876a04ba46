// `duckvisord`: parses flags, loads the config (exit 78 EX_CONFIG on error), starts the daemon, and turns
// signals into graceful-then-forceful shutdown that re-raises the signal so the exit status tells the truth.
import { ConfigError, loadConfig, resolveConfigPath } from './config.js';
import { Daemon, type OnceSummary } from './daemon.js';
import { createLog, type LogFormat } from './log.js';
import { SystemdNotifier } from './notify.js';
import { defaultPlainEveryMs, OnceProgress } from './once-progress.js';
import { formatBytes, formatDuration, parseDuration } from './units.js';

/** sysexits.h EX_CONFIG: the configuration is wrong. */
export const EXIT_CONFIG = 78;
/** sysexits.h EX_USAGE. */
export const EXIT_USAGE = 64;

const usage = `usage: duckvisord [--config FILE] [--once [--progress-every DURATION]] [--log-format human|json]

  --config FILE        configuration file (default: $DUCKVISOR_CONFIG, ./duckvisor.yaml, /etc/duckvisor/duckvisor.yaml)
  --once               run the autostart jobs (with their retries) to completion in one cycle, print a summary,
                       exit 0 only if all succeeded; a job runs after its dependencies (after:) succeeded — those
                       are pulled in even when not autostart — and is skipped when one of them failed;
                       while runs are live, their progress is shown on stderr (redrawn in place on a terminal)
  --progress-every D   --once without a terminal: print one progress line per live job every D (default 10s;
                       none: no progress lines)
  --log-format FORMAT  human (default) or json lines; lines get <N> priority prefixes under journald
  --help               this text
`;

interface Flags {
  config?: string;
  once: boolean;
  logFormat: LogFormat;
  /** Period of the plain --once progress lines; 0: none. */
  progressEveryMs: number;
}

function parseFlags(argv: string[]): Flags | string {
  const flags: Flags = { once: false, logFormat: 'human', progressEveryMs: defaultPlainEveryMs };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const [name, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => inline ?? argv[++i];
    switch (name) {
      case '--config': {
        const file = value();
        if (!file) return '--config needs a file';
        flags.config = file;
        break;
      }
      case '--once':
        flags.once = true;
        break;
      case '--progress-every': {
        const text = value();
        const ms = text === 'none' ? 0 : text === undefined ? undefined : parseDuration(text);
        if (ms === undefined) return `--progress-every needs a duration such as 10s or 1m, or none; got '${text ?? ''}'`;
        flags.progressEveryMs = ms;
        break;
      }
      case '--log-format': {
        const format = value();
        if (format !== 'human' && format !== 'json') return `--log-format must be human or json, got '${format ?? ''}'`;
        flags.logFormat = format;
        break;
      }
      case '--help':
      case '-h':
        return 'help';
      default:
        return `unknown argument '${arg}'`;
    }
  }
  return flags;
}

/** The `--once` summary table (stdout). */
export function formatOnceSummary(summary: OnceSummary): string {
  const header = ['JOB', 'RUN', 'ATTEMPT', 'STATE', 'REASON', 'DURATION', 'PEAK RSS', 'ROWS', 'DETAIL'];
  const rows = summary.runs.map((run) => [
    run.job,
    run.id,
    String(run.attempt),
    run.state,
    run.reason ?? '-',
    run.started_at && run.ended_at ? formatDuration(Date.parse(run.ended_at) - Date.parse(run.started_at)) : '-',
    formatBytes(run.peak_rss_bytes),
    run.rows_written === null ? '-' : String(run.rows_written),
    (run.detail ?? '').replace(/\s+/g, ' ').slice(0, 80),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const counts = new Map<string, number>();
  for (const run of summary.runs) counts.set(run.state, (counts.get(run.state) ?? 0) + 1);
  const tally = [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
  const verdict = summary.ok ? `all ${summary.runs.length} job(s) succeeded` : `NOT all jobs succeeded${tally ? `: ${tally}` : ''}`;
  return [line(header), ...rows.map(line), '', verdict].join('\n') + '\n';
}

/** Entry point of bin/duckvisord.js. */
export async function main(argv: string[]): Promise<void> {
  const flags = parseFlags(argv);
  if (flags === 'help') {
    process.stdout.write(usage);
    return;
  }
  if (typeof flags === 'string') {
    process.stderr.write(`duckvisord: ${flags}\n\n${usage}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  // --once shows live progress on stderr; the log writes through it so a redrawn block and log lines never mix.
  const progress = flags.once
    ? new OnceProgress({
        tty: flags.logFormat === 'human' && Boolean(process.stderr.isTTY) && process.env.TERM !== 'dumb',
        plainEveryMs: flags.progressEveryMs,
        plain: (line) => log.info(line),
      })
    : null;
  const log = createLog({ format: flags.logFormat, ...(progress ? { stream: progress.logStream } : {}) });
  // Captured before anything else: children never see NOTIFY_SOCKET (the daemon strips it from their env).
  const notifier = new SystemdNotifier({ log });

  let config;
  try {
    config = loadConfig(resolveConfigPath(flags.config, process.env));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`duckvisord: configuration error\n${error.message}\n`);
      process.exitCode = EXIT_CONFIG;
      return;
    }
    throw error;
  }

  notifier.startWatchdog();
  let daemon: Daemon;
  try {
    daemon = await Daemon.start({
      config,
      log,
      once: flags.once,
      onStatus: (line) => notifier.status(line),
      // STOPPING=1 as soon as a shutdown begins (also one asked for through the API), not after the runs' grace.
      onStopping: () => notifier.stopping(),
    });
  } catch (error) {
    notifier.stopWatchdog();
    process.stderr.write(`duckvisord: cannot start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
    await notifier.flush(1000);
    return;
  }
  log.info(`duckvisord ready`, { pid: process.pid, config: config.file, socket: config.control.socket, mode: flags.once ? 'once' : 'daemon' });
  progress?.start(() => daemon.status());
  notifier.ready(`${config.jobs.size} job(s) configured`);

  let exitSignal: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (exitSignal === null) {
      exitSignal = signal;
      log.info(`${signal} received: stopping runs gracefully (send it again to force)`);
      notifier.stopWatchdog();
      void daemon.stopAll();
      return;
    }
    log.warn(`${signal} received again: killing every live run now`);
    daemon.forceKill();
  };
  const onHangup = () => {
    try {
      const { changes } = daemon.reload();
      log.info(`SIGHUP: configuration reloaded (${changes.length} change(s))`);
    } catch (error) {
      log.error(`SIGHUP: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHangup);

  const summary = await daemon.finished;
  progress?.stop();
  notifier.stopping();
  notifier.stopWatchdog();
  process.off('SIGHUP', onHangup);
  if (flags.once && exitSignal === null) {
    process.stdout.write(formatOnceSummary(summary));
    process.exitCode = summary.ok ? 0 : 1;
  }
  log.info('duckvisord stopped');
  await notifier.flush(2000);
  if (exitSignal !== null) {
    // Re-raise so whoever started us sees "killed by SIGTERM", not a made-up exit code.
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.kill(process.pid, exitSignal);
  }
}
