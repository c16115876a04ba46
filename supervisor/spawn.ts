// Starting one run's child: its own process group (detached), its exact environment, stdout/stderr
// appended to the run's log, output lines and validated IPC messages handed to the caller, and an
// oom_score_adj that makes the kernel's OOM killer pick a job rather than the daemon. Whatever the
// child does (crash, garbage on the channel, ENOENT), nothing here throws or rejects unhandled.
//
// The child's stdout and stderr are the log file itself (an O_APPEND fd handed over at spawn), not
// pipes through the daemon: a child that prints keeps printing when the daemon is SIGKILLed (a pipe
// would kill it with SIGPIPE/EPIPE on its next line), which is what makes `recovery: adopt` work for
// chatty scripts. The daemon reads the lines back from the file (LogTail), on every sample and at the
// end of the run. Both streams share the one file, so a progress line printed on stderr counts too.
//
// The IPC channel is Node's wire format (serialization 'json': one JSON document per line on the fd
// named by NODE_CHANNEL_FD, so `process.send` in a Node child and the Python client both work), but the
// parent end is a plain socket read here rather than execa's `ipc` option: Node's own channel parser
// throws an uncaught exception on a line that is not JSON (measured on Node 20.20: one bad line from a
// Python child took the parent down), and a daemon must survive any bytes a child writes.
import { closeSync, fstatSync, mkdirSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { Socket } from 'node:net';
import { MAX_MESSAGE_BYTES, parseChildMessage, type ChildMessage } from '../extractors/sdk/protocol.js';
import { LineSplitter } from './heartbeat.js';
import { RUN_ID_VARIABLE, processStartTime, setOomScoreAdj } from './proc.js';
import type { RunSpec } from './types.js';

/** The fd of the IPC channel in the child (NODE_CHANNEL_FD). */
export const CHANNEL_FD = 3;

/** oom_score_adj written for every child (the daemon keeps its own, normally 0). */
export const CHILD_OOM_SCORE_ADJ = 500;

export interface SpawnHandlers {
  /** A message that passed parseChildMessage. */
  message(message: ChildMessage): void;
  /** A message that did not; `error` says why. */
  badMessage(error: string): void;
  /** One line of the child's output (stdout or stderr, both written to the log), read back from the log file. */
  stdoutLine(line: string): void;
}

/** How the child process ended. `error` is set when it could not be started at all. */
export interface ChildExit {
  exitCode: number | null;
  signal: string | null;
  error: string | null;
}

export interface SpawnedChild {
  /** Undefined when the spawn failed (see `exited`). */
  readonly pid: number | undefined;
  /** /proc start time of the child, read right after spawn; null when the spawn failed. */
  readonly startTime: string | null;
  /** Resolves when the child has exited and been reaped (or could not start). Never rejects. */
  readonly exited: Promise<ChildExit>;
  /** Resolves when execa has settled (the IPC channel, if any, is closed). Never rejects. */
  readonly settled: Promise<void>;
  /** Whether the child was given an IPC channel. */
  readonly hasChannel: boolean;
  /** Sends `{type:'stop', reason}` when there is an open IPC channel; false when there is none. Never throws. */
  sendStop(reason: string): boolean;
  /** Reads the lines the child has added to its log since the last call and hands them to `stdoutLine`. */
  pollOutput(): void;
  /** Reads the rest of the log, emits the last unterminated line and stops reading. */
  closeOutput(): void;
  /** Stops reading the IPC channel (used when a survivor keeps it open). */
  detachStreams(): void;
}

/** Most bytes of log one poll reads; a child writing faster is skipped ahead (its progress lines are not all needed). */
export const MAX_LOG_READ_BYTES = 8 * 1024 * 1024;

const tailBuffer = Buffer.allocUnsafe(64 * 1024);

// Tailing by a read fd opened on the same inode at spawn (not by path), so a log renamed or rotated
// meanwhile is still read where the child writes. An idle poll is one pread; a poll that finds new bytes
// reads the new bytes only.
/** Reads the lines appended to a log file, from a given offset on; pollable and cheap when nothing changed. */
export class LogTail {
  private fd: number;
  private offset: number;
  private splitter: LineSplitter;
  private skipPartialLine = false;

  /** Opens `file` for reading from `offset` (default: its current end). Throws when it cannot be opened. */
  constructor(
    file: string,
    private readonly onLine: (line: string) => void,
    offset?: number,
  ) {
    this.fd = openSync(file, 'r');
    this.offset = offset ?? fstatSync(this.fd).size;
    this.splitter = this.newSplitter();
  }

  private newSplitter(): LineSplitter {
    return new LineSplitter((line) => {
      if (this.skipPartialLine) {
        this.skipPartialLine = false;
        return;
      }
      this.onLine(line);
    });
  }

  /** Reads what was appended since the last poll (at most MAX_LOG_READ_BYTES; older bytes are skipped). Never throws. */
  poll(): void {
    if (this.fd < 0) return;
    // Every run's log is polled at every tick and is almost always unchanged. One pread that starts one
    // byte before the offset answers that case without an fstat (and the Stats object and four Dates it
    // costs): 1 byte back = nothing new; 0 bytes = the file is now shorter than what was read (truncated).
    const back = this.offset > 0 ? 1 : 0;
    let n: number;
    try {
      n = readSync(this.fd, tailBuffer, 0, tailBuffer.length, this.offset - back);
    } catch {
      return;
    }
    if (n === back) return;
    if (n > back && n < tailBuffer.length) {
      // Everything new fitted in one read: the common case of a run printing a few lines.
      this.offset += n - back;
      this.splitter.push(tailBuffer.subarray(back, n));
      return;
    }
    // Truncated, or a backlog of at least a buffer: the size decides what to read.
    this.pollBySize();
  }

  private pollBySize(): void {
    let size: number;
    try {
      size = fstatSync(this.fd).size;
    } catch {
      return;
    }
    if (size < this.offset) {
      // Truncated by someone: start over at the new end of what is there.
      this.offset = 0;
      this.splitter = this.newSplitter();
    }
    if (size - this.offset > MAX_LOG_READ_BYTES) {
      // Behind by more than a poll may read: jump, and drop the line the jump lands in the middle of.
      this.offset = size - MAX_LOG_READ_BYTES;
      this.splitter = this.newSplitter();
      this.skipPartialLine = true;
    }
    while (this.offset < size) {
      let n: number;
      try {
        n = readSync(this.fd, tailBuffer, 0, Math.min(tailBuffer.length, size - this.offset), this.offset);
      } catch {
        return;
      }
      if (n === 0) return;
      this.offset += n;
      this.splitter.push(tailBuffer.subarray(0, n));
    }
  }

  /** Reads the rest, emits a last unterminated line, and closes the file. Idempotent. */
  close(): void {
    if (this.fd < 0) return;
    this.poll();
    this.splitter.end();
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = -1;
  }
}

function describe(error: unknown): string {
  if (error && typeof error === 'object' && 'shortMessage' in error) return String((error as { shortMessage: unknown }).shortMessage);
  return error instanceof Error ? error.message : String(error);
}

/** Spawns spec.argv as the leader of a new process group and wires its output, IPC and log. */
export function spawnChild(spec: RunSpec, handlers: SpawnHandlers): SpawnedChild {
  const [file, ...args] = spec.argv;
  if (!file) throw new Error(`run ${spec.runId}: argv is empty; the job needs a command`);
  let logFd: number;
  try {
    mkdirSync(path.dirname(spec.logFile), { recursive: true });
    logFd = openSync(spec.logFile, 'a');
  } catch (error) {
    throw new Error(`run ${spec.runId}: cannot open its log file ${spec.logFile} for appending (${(error as Error).message}); check that state_dir is writable`);
  }
  let tail: LogTail;
  try {
    tail = new LogTail(spec.logFile, (line) => handlers.stdoutLine(line), fstatSync(logFd).size);
  } catch (error) {
    closeSync(logFd);
    throw new Error(`run ${spec.runId}: cannot read back its log file ${spec.logFile} (${(error as Error).message})`);
  }

  const env: Record<string, string> = spec.ipc
    ? { ...spec.env, NODE_CHANNEL_FD: String(CHANNEL_FD), NODE_CHANNEL_SERIALIZATION_MODE: 'json' }
    : { ...spec.env };
  if (!spec.ipc) {
    delete env.NODE_CHANNEL_FD;
    delete env.NODE_CHANNEL_SERIALIZATION_MODE;
  }
  // The run id marks every descendant (see proc.ts findRunProcesses); the daemon always sets it.
  if (env[RUN_ID_VARIABLE] === undefined) env[RUN_ID_VARIABLE] = spec.runId;
  const launch = () => {
    try {
      return execa(file, args, {
        cwd: spec.cwd,
        env,
        extendEnv: false,
        detached: true,
        cleanup: false,
        // execa's types list fd numbers only up to 9; any open fd is passed to the child as it is.
        stdio: (spec.ipc ? ['ignore', logFd, logFd, 'pipe'] : ['ignore', logFd, logFd]) as unknown as ['ignore', 1, 2, 'pipe'],
        buffer: false,
        reject: false,
        forceKillAfterDelay: false,
      });
    } finally {
      // The child holds its own copy (spawn is synchronous); ours would only keep the file open.
      closeSync(logFd);
    }
  };
  let subprocess: ReturnType<typeof launch>;
  try {
    subprocess = launch();
  } catch (error) {
    tail.close();
    throw error;
  }
  subprocess.catch(() => {});
  const pid = subprocess.pid;
  const startTime = pid === undefined ? null : processStartTime(pid);
  if (pid !== undefined) setOomScoreAdj(pid, CHILD_OOM_SCORE_ADJ);

  const channel = spec.ipc ? (subprocess.stdio[CHANNEL_FD] as Socket | undefined) : undefined;
  if (channel) {
    const messages = new LineSplitter(
      (line) => {
        if (line.trim().length === 0) return;
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch (error) {
          handlers.badMessage(`message is not JSON (${(error as Error).message}): ${JSON.stringify(line.slice(0, 80))}`);
          return;
        }
        const parsed = parseChildMessage(value, Buffer.byteLength(line));
        if (parsed.ok) handlers.message(parsed.message);
        else handlers.badMessage(parsed.error);
      },
      MAX_MESSAGE_BYTES,
      (chars) => handlers.badMessage(`message of ${chars} characters exceeds the ${MAX_MESSAGE_BYTES}-byte limit`),
    );
    channel.on('data', (chunk: Buffer) => messages.push(chunk));
    channel.on('error', () => {});
    channel.once('close', () => messages.end());
  }

  const exited = new Promise<ChildExit>((resolve) => {
    subprocess.once('exit', (code: number | null, sig: NodeJS.Signals | null) => resolve({ exitCode: code, signal: sig, error: null }));
    // Spawn failures (ENOENT, EACCES) emit no 'exit'; execa settles with a failed result instead.
    subprocess.then(
      (result) => resolve({ exitCode: result.exitCode ?? null, signal: result.signal ?? null, error: pid === undefined ? describe(result) : null }),
      (error: unknown) => resolve({ exitCode: null, signal: null, error: describe(error) }),
    );
  });
  const settled = Promise.allSettled([subprocess]).then(() => undefined);

  return {
    pid,
    startTime,
    exited,
    settled,
    hasChannel: channel !== undefined,
    sendStop(reason: string): boolean {
      if (!channel || channel.destroyed || !channel.writable) return false;
      try {
        channel.write(`${JSON.stringify({ type: 'stop', reason })}\n`, () => {});
        return true;
      } catch {
        // The channel closed between the check and the write.
        return false;
      }
    },
    pollOutput: () => tail.poll(),
    closeOutput: () => tail.close(),
    detachStreams() {
      channel?.destroy();
    },
  };
}
