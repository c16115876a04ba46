// Starting one run's child: its own process group (detached), its exact environment, stdout/stderr
// appended to the run's log, stdout lines and validated IPC messages handed to the caller, and an
// oom_score_adj that makes the kernel's OOM killer pick a job rather than the daemon. Whatever the
// child does (crash, garbage on the channel, ENOENT), nothing here throws or rejects unhandled.
//
// The IPC channel is Node's wire format (serialization 'json': one JSON document per line on the fd
// named by NODE_CHANNEL_FD, so `process.send` in a Node child and the Python client both work), but the
// parent end is a plain socket read here rather than execa's `ipc` option: Node's own channel parser
// throws an uncaught exception on a line that is not JSON (measured on Node 20.20: one bad line from a
// Python child took the parent down), and a daemon must survive any bytes a child writes.
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { Socket } from 'node:net';
import { MAX_MESSAGE_BYTES, parseChildMessage, type ChildMessage } from '../extractors/sdk/protocol.js';
import { LineSplitter } from './heartbeat.js';
import { processStartTime, setOomScoreAdj } from './proc.js';
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
  /** One line of the child's stdout (already written to the log). */
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
  /** Resolves when execa has settled and the log file is closed. Never rejects. */
  readonly settled: Promise<void>;
  /** Sends `{type:'stop', reason}` when there is an open IPC channel; never throws. */
  sendStop(reason: string): void;
  /** Stops reading the child's pipes (used when a survivor keeps them open). */
  detachStreams(): void;
}

function describe(error: unknown): string {
  if (error && typeof error === 'object' && 'shortMessage' in error) return String((error as { shortMessage: unknown }).shortMessage);
  return error instanceof Error ? error.message : String(error);
}

/** Spawns spec.argv as the leader of a new process group and wires its output, IPC and log. */
export function spawnChild(spec: RunSpec, handlers: SpawnHandlers): SpawnedChild {
  const [file, ...args] = spec.argv;
  if (!file) throw new Error(`run ${spec.runId}: argv is empty; the job needs a command`);
  mkdirSync(path.dirname(spec.logFile), { recursive: true });
  const log: WriteStream = createWriteStream(spec.logFile, { flags: 'a' });
  log.on('error', () => {
    // A full disk must not crash the daemon; the disk rule will stop the run.
  });
  const logClosed = new Promise<void>((resolve) => log.once('close', () => resolve()));

  const env: Record<string, string> = spec.ipc
    ? { ...spec.env, NODE_CHANNEL_FD: String(CHANNEL_FD), NODE_CHANNEL_SERIALIZATION_MODE: 'json' }
    : { ...spec.env };
  if (!spec.ipc) {
    delete env.NODE_CHANNEL_FD;
    delete env.NODE_CHANNEL_SERIALIZATION_MODE;
  }
  const subprocess = execa(file, args, {
    cwd: spec.cwd,
    env,
    extendEnv: false,
    detached: true,
    cleanup: false,
    stdio: spec.ipc ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
    buffer: false,
    reject: false,
    forceKillAfterDelay: false,
  });
  subprocess.catch(() => {});
  const pid = subprocess.pid;
  const startTime = pid === undefined ? null : processStartTime(pid);
  if (pid !== undefined) setOomScoreAdj(pid, CHILD_OOM_SCORE_ADJ);

  const splitter = new LineSplitter((line) => handlers.stdoutLine(line));
  let openStreams = 0;
  const streamDone = () => {
    if (--openStreams === 0) log.end();
  };
  for (const stream of [subprocess.stdout, subprocess.stderr]) {
    if (!stream) continue;
    openStreams++;
    const isStdout = stream === subprocess.stdout;
    stream.on('data', (chunk: Buffer) => {
      log.write(chunk);
      if (isStdout) splitter.push(chunk);
    });
    stream.on('error', () => {});
    stream.once('close', () => {
      if (isStdout) splitter.end();
      streamDone();
    });
  }
  if (openStreams === 0) log.end();

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
  const settled = Promise.allSettled([subprocess, logClosed]).then(() => undefined);

  return {
    pid,
    startTime,
    exited,
    settled,
    sendStop(reason: string) {
      if (!channel || channel.destroyed || !channel.writable) return;
      try {
        channel.write(`${JSON.stringify({ type: 'stop', reason })}\n`, () => {});
      } catch {
        // The channel closed between the check and the write.
      }
    },
    detachStreams() {
      subprocess.stdout?.destroy();
      subprocess.stderr?.destroy();
      channel?.destroy();
    },
  };
}
