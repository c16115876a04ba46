// The child's side of the protocol: hello, heartbeats from the event loop, progress, log, ready; and
// the supervisor's `stop`. Without an IPC channel (an extractor run by hand) the same facts go to
// stdout as `[HEARTBEAT] done/total` lines, the format the supervisor also understands on stdout.
import {
  PROTOCOL_VERSION,
  stopMessage,
  type ChildMessage,
  type LogMessage,
  type ReadyMessage,
} from './protocol.js';

export type LogLevel = LogMessage['level'];

export interface Channel {
  /** True when a supervisor is on the other end of an IPC channel. */
  readonly supervised: boolean;
  readonly stopRequested: boolean;
  readonly stopReason: string | undefined;
  hello(extractor: string): void;
  progress(done: number, total: number | undefined, unit: string, rows?: number): void;
  log(level: LogLevel, msg: string): void;
  /** Resolves once the message has been handed to the OS (so exiting right after loses nothing). */
  ready(message: Omit<ReadyMessage, 'type'>): Promise<void>;
  /** Called once when the supervisor asks for a clean stop or the channel closes. */
  onStop(listener: (reason: string) => void): void;
  /** Marks the run as stopping for a reason found in this process (e.g. a SIGTERM); the first reason wins. */
  requestStop(reason: string): void;
  /** Resolves when every message sent so far has been handed to the OS (at most `timeoutMs` later). */
  drain(timeoutMs?: number): Promise<void>;
  close(): void;
}

export interface ChannelOptions {
  heartbeatTimeoutMs: number;
  /** Where fallback lines go; stdout by default. */
  out?: NodeJS.WritableStream;
}

/** Heartbeat interval floor, so a tiny timeout cannot turn into a busy loop. */
const MIN_BEAT_MS = 10;
/** Without IPC, progress lines are printed at most this often (the timer prints the latest anyway). */
const FALLBACK_PRINT_MS = 1000;
/**
 * Progress messages go out at most this often; one held back goes out when the spacing is over (or
 * before any other message). An extractor reporting every unit (mlflow-runs over a tracking server:
 * ~500 units a second) otherwise costs itself and the supervisor one message per unit, on the cores
 * the extraction needs; the stall clock does not need more than a few a second.
 */
const PROGRESS_SPACING_MS = 25;

// Why: heartbeat_timeout/3 leaves two beats of slack before the supervisor's liveness clock fires.
export function heartbeatInterval(heartbeatTimeoutMs: number): number {
  return Math.max(MIN_BEAT_MS, Math.floor(heartbeatTimeoutMs / 3));
}

// Why: every SDK process (extractor and publisher) talks to the supervisor through this one object.
export function openChannel(options: ChannelOptions): Channel {
  const supervised = typeof process.send === 'function' && process.connected;
  const out = options.out ?? process.stdout;
  const stopListeners: ((reason: string) => void)[] = [];
  let stopReason: string | undefined;
  let lastProgress: { done: number; total: number | undefined } | undefined;
  let lastPrinted = 0;
  let closed = false;
  let lastSend: Promise<void> = Promise.resolve();
  let lastProgressSent = -Infinity;
  let heldProgress: ChildMessage | undefined;
  let progressTimer: NodeJS.Timeout | undefined;

  const send = (message: ChildMessage, callback?: (error: Error | null) => void): void => {
    if (closed || !process.connected || !process.send) {
      callback?.(null);
      return;
    }
    lastSend = new Promise((resolve) => {
      process.send!(message, undefined, {}, (error) => {
        callback?.(error ?? null);
        resolve();
      });
    });
  };

  /** Sends the progress message held back, if any. */
  const sendHeldProgress = (): void => {
    if (progressTimer !== undefined) clearTimeout(progressTimer);
    progressTimer = undefined;
    const message = heldProgress;
    heldProgress = undefined;
    if (message === undefined) return;
    lastProgressSent = performance.now();
    send(message);
  };

  const printHeartbeat = (): void => {
    const done = lastProgress?.done ?? 0;
    const total = lastProgress?.total;
    out.write(`[HEARTBEAT] ${done}/${total ?? '?'}\n`);
    lastPrinted = Date.now();
  };

  const requestStop = (reason: string): void => {
    if (stopReason !== undefined) return;
    stopReason = reason;
    for (const listener of stopListeners) listener(reason);
  };

  const onMessage = (raw: unknown): void => {
    const parsed = stopMessage.safeParse(raw);
    if (parsed.success) requestStop(parsed.data.reason);
  };
  const onDisconnect = (): void => requestStop('the supervisor closed the IPC channel');

  if (supervised) {
    process.on('message', onMessage);
    process.on('disconnect', onDisconnect);
    // The channel must not keep a finished extractor alive.
    process.channel?.unref();
  }

  const timer = setInterval(() => {
    if (supervised) send({ type: 'heartbeat' });
    else printHeartbeat();
  }, heartbeatInterval(options.heartbeatTimeoutMs));
  timer.unref();

  return {
    supervised,
    get stopRequested() {
      return stopReason !== undefined;
    },
    get stopReason() {
      return stopReason;
    },
    hello(extractor) {
      if (supervised) send({ type: 'hello', protocol: PROTOCOL_VERSION, extractor, pid: process.pid });
      else out.write(`[duckvisor] ${extractor} started (pid ${process.pid}, not supervised)\n`);
    },
    progress(done, total, unit, rows) {
      lastProgress = { done, total };
      if (supervised) {
        heldProgress = { type: 'progress', done, unit, ...(total === undefined ? {} : { total }), ...(rows === undefined ? {} : { rows }) };
        const wait = lastProgressSent + PROGRESS_SPACING_MS - performance.now();
        if (wait <= 0) sendHeldProgress();
        else progressTimer ??= setTimeout(sendHeldProgress, wait);
      } else if (Date.now() - lastPrinted >= FALLBACK_PRINT_MS || (total !== undefined && done >= total)) {
        printHeartbeat();
      }
    },
    log(level, msg) {
      const text = msg.length > 60_000 ? `${msg.slice(0, 60_000)}… (truncated)` : msg;
      if (supervised) {
        sendHeldProgress();
        send({ type: 'log', level, msg: text });
      } else process.stderr.write(`[${level}] ${text}\n`);
    },
    ready(message) {
      if (!supervised) {
        out.write(`[duckvisor] ready: ${message.rows} rows in ${message.tables.join(', ') || 'no tables'}\n`);
        return Promise.resolve();
      }
      sendHeldProgress();
      return new Promise((resolve, reject) => {
        send({ type: 'ready', ...message }, (error) => (error ? reject(error) : resolve()));
      });
    },
    onStop(listener) {
      stopListeners.push(listener);
      if (stopReason !== undefined) listener(stopReason);
    },
    requestStop,
    drain(timeoutMs = 2000) {
      sendHeldProgress();
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        void lastSend.then(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    close() {
      sendHeldProgress();
      closed = true;
      clearInterval(timer);
      if (supervised) {
        process.off('message', onMessage);
        process.off('disconnect', onDisconnect);
      }
    },
  };
}
