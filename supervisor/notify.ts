// Tells systemd how the daemon is doing (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) without a native addon.
//
// Node has no AF_UNIX/SOCK_DGRAM sockets, so every notification spawns `systemd-notify --pid=<daemon pid> MSG`
// (the unit needs NotifyAccess=all; --pid makes systemd attribute the datagram to the daemon and adds
// MAINPID=). systemd-notify ≥ 246 waits on a barrier until the manager has read the message, so a short-lived
// sender is no longer racy. See reference/node-notes.md §4.
//
// How the daemon uses it (call sites):
//   const notifier = new SystemdNotifier({ log });        // at start, BEFORE stripping systemd vars from process.env
//   const childEnv = stripSystemdEnv(process.env);        // base env for jobs and hooks: no NOTIFY_SOCKET & co.
//   notifier.startWatchdog();                             // right after start; pings from the MAIN event loop
//   notifier.ready(`${n} jobs configured`);              // once the control socket listens
//   notifier.status('2 running, 1 queued, 0 failed');     // whenever the one-line summary changes (coalesced)
//   notifier.stopping(); notifier.stopWatchdog();         // first thing on SIGTERM/SIGINT
//   await notifier.flush(2000);                           // last thing before exit
// Without NOTIFY_SOCKET (not under systemd) every call is a no-op.
import { spawn } from 'node:child_process';

/** Variables systemd hands the daemon that must not leak to jobs or hooks (a job could otherwise ping our watchdog). */
export const systemdDaemonVariables = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'] as const;

/** Why: children must not inherit the daemon's notify socket or watchdog; returns a copy without them. */
export function stripSystemdEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const clean: Record<string, string> = {};
  const drop = new Set<string>(systemdDaemonVariables);
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && !drop.has(key)) clean[key] = value;
  }
  return clean;
}

export interface NotifierOptions {
  /** Where NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID are read; captured once, at construction. */
  env?: NodeJS.ProcessEnv;
  /** The daemon's pid (passed as --pid); defaults to process.pid. */
  pid?: number;
  /** Program to run; defaults to `systemd-notify` from PATH. */
  command?: string;
  /** A notifier child that has not exited after this long is killed (ms). */
  sendTimeout?: number;
  /** Failures are reported here, never thrown. */
  log?: { warn(msg: string, fields?: Record<string, unknown>): void; debug?(msg: string, fields?: Record<string, unknown>): void };
}

type Kind = 'ready' | 'status' | 'watchdog' | 'stopping';

interface Channel {
  inFlight: Promise<void> | null;
  /** The latest message that arrived while one was in flight; sent when it finishes (older ones are dropped). */
  pending: string[] | null;
}

/** Parses WATCHDOG_USEC/WATCHDOG_PID the way sd_watchdog_enabled(3) does; returns the ping interval (half the timeout) in ms. */
export function watchdogIntervalFromEnv(env: NodeJS.ProcessEnv, pid: number): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.WATCHDOG_USEC || !Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return null;
  return Math.max(1, Math.floor(usec / 1000 / 2));
}

/** Why: the daemon's only channel to systemd's readiness and watchdog logic (see the file header for call sites). */
export class SystemdNotifier {
  /** False when NOTIFY_SOCKET is unset: every method is then a no-op. */
  readonly enabled: boolean;
  /** Ping period in ms (half of WATCHDOG_USEC), or null when systemd does not watch this pid. */
  readonly watchdogInterval: number | null;
  /** Notifications handed to systemd-notify so far (for status/diagnostics). */
  sent = 0;
  failed = 0;

  readonly #socket: string | undefined;
  readonly #pid: number;
  readonly #command: string;
  readonly #sendTimeout: number;
  readonly #log: NotifierOptions['log'];
  readonly #channels = new Map<Kind, Channel>();
  #timer: NodeJS.Timeout | null = null;
  #lastStatus: string | null = null;

  constructor(options: NotifierOptions = {}) {
    const env = options.env ?? process.env;
    this.#socket = env.NOTIFY_SOCKET || undefined;
    this.#pid = options.pid ?? process.pid;
    this.#command = options.command ?? 'systemd-notify';
    this.#sendTimeout = options.sendTimeout ?? 5000;
    this.#log = options.log;
    this.enabled = this.#socket !== undefined;
    this.watchdogInterval = this.enabled ? watchdogIntervalFromEnv(env, this.#pid) : null;
  }

  /** READY=1 (optionally with a first STATUS=): start-up is complete, systemd starts the watchdog clock. */
  ready(status?: string): void {
    const lines = ['READY=1'];
    if (status !== undefined) {
      this.#lastStatus = oneLine(status);
      lines.push(`STATUS=${this.#lastStatus}`);
    }
    this.#send('ready', lines);
  }

  /** STATUS=<line>, shown by `systemctl status`; repeated identical lines are not re-sent. */
  status(line: string): void {
    const text = oneLine(line);
    if (text === this.#lastStatus) return;
    this.#lastStatus = text;
    this.#send('status', [`STATUS=${text}`]);
  }

  /** STOPPING=1: shutdown has begun (systemd then waits up to TimeoutStopSec). */
  stopping(): void {
    this.#send('stopping', ['STOPPING=1']);
  }

  /** One WATCHDOG=1 keep-alive. Skipped (coalesced) while the previous ping is still in flight. */
  watchdog(): void {
    this.#send('watchdog', ['WATCHDOG=1']);
  }

  /**
   * Pings WATCHDOG=1 every watchdogInterval from a setInterval on the calling (main) event loop: if that loop
   * is blocked, the pings stop and systemd restarts the daemon, which is the point. Returns whether pinging started.
   */
  startWatchdog(): boolean {
    if (this.watchdogInterval === null || this.#timer) return this.#timer !== null;
    this.watchdog();
    this.#timer = setInterval(() => this.watchdog(), this.watchdogInterval);
    this.#timer.unref();
    return true;
  }

  stopWatchdog(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Waits (at most `ms`) until every notification in flight and pending has been handed over. */
  async flush(ms = 2000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const busy = [...this.#channels.values()].map((channel) => channel.inFlight).filter((p): p is Promise<void> => p !== null);
      if (busy.length === 0) return;
      const left = deadline - Date.now();
      if (left <= 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(busy), new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  }

  #send(kind: Kind, lines: string[]): void {
    if (!this.enabled) return;
    let channel = this.#channels.get(kind);
    if (!channel) {
      channel = { inFlight: null, pending: null };
      this.#channels.set(kind, channel);
    }
    if (channel.inFlight) {
      channel.pending = lines;
      return;
    }
    const run = (message: string[]): Promise<void> =>
      this.#spawn(kind, message).then(() => {
        const next = channel.pending;
        channel.pending = null;
        channel.inFlight = next ? run(next) : null;
        return channel.inFlight ?? undefined;
      });
    channel.inFlight = run(lines);
  }

  #spawn(kind: Kind, lines: string[]): Promise<void> {
    return new Promise<void>((resolve) => {
      const argv = [`--pid=${this.#pid}`, ...lines];
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (error: string | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) {
          this.failed++;
          this.#log?.warn('systemd notification failed', { kind, message: lines.join(' '), error });
        } else {
          this.sent++;
        }
        resolve();
      };
      let child: ReturnType<typeof spawn>;
      try {
        // Only NOTIFY_SOCKET is passed: systemd-notify needs nothing else, and PATH lets it be found.
        child = spawn(this.#command, argv, {
          stdio: ['ignore', 'ignore', 'pipe'],
          env: { NOTIFY_SOCKET: this.#socket, PATH: process.env.PATH ?? '/usr/bin:/bin' },
        });
      } catch (error) {
        finish(String(error));
        return;
      }
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        if (stderr.length < 2000) stderr += chunk.toString();
      });
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish(`${this.#command} did not exit within ${this.#sendTimeout} ms (killed)`);
      }, this.#sendTimeout);
      child.on('error', (error) => finish(`cannot run ${this.#command}: ${error.message}`));
      child.on('close', (code, signal) => {
        if (code === 0) finish(null);
        else finish(`${this.#command} exited with ${code ?? signal}${stderr ? ': ' + stderr.trim() : ''}`);
      });
    });
  }
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').trim();
}
