// The control API: HTTP/JSON under /v1 on a unix socket that is 0600 from birth (umask around listen).
// `createControlHandler` is transport-free so a TCP/web listener can serve the same routes later.
import { createReadStream, existsSync, openSync, readSync, closeSync, statSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventRow, RunFilter, RunView, SampleRow } from './history.js';

/** An API failure with its HTTP status; the message is shown to the operator as is. */
export class ControlError extends Error {
  override name = 'ControlError';
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export interface JobStatus {
  job: string;
  kind: 'command' | 'extractor';
  autostart: boolean;
  /** The latest run (live, queued or finished), if any. */
  run: RunView | null;
  /** The queued retry or start, if one is waiting. */
  queued: RunView | null;
  rss_limit_bytes: number | null;
  /** The job's swap limit (limits.swap), drawn as the page's swap gauge; null when unlimited. */
  swap_limit_bytes: number | null;
  /** Progress units per second over the recent window (live runs). */
  rate: number | null;
  /** Estimated ms to completion (live runs with a total). */
  eta_ms: number | null;
  uptime_ms: number | null;
  /** Latest live tree RSS/swap. */
  rss_bytes: number | null;
  swap_bytes: number | null;
  in_config: boolean;
  /** Cron expression, if the job has one, and when it fires next. */
  schedule: string | null;
  next_scheduled_at: string | null;
  /** Jobs listed in `after`. */
  after?: string[];
  /** The open dependency cycle the job waits in, and the dependencies it still waits for (null when not waiting). */
  cycle?: string | null;
  waiting_for?: string[] | null;
}

/** A dependency cycle as the API shows it: its members in order, each with its run in the cycle or what it waits for. */
export interface CycleView {
  id: string;
  kind: string;
  root: string | null;
  started_at: string;
  ended_at: string | null;
  outcome: string | null;
  members: Array<{ job: string; after: string[]; run: RunView | null; waiting_for: string[] | null }>;
}

/** What a start request did: the queued run (null while a --with-deps job waits), its cycle, and any warning. */
export interface StartResult {
  run: RunView | null;
  cycle: CycleView | null;
  /** Set when the job was started although its dependencies have not succeeded in its current cycle. */
  warning: string | null;
}

export interface StatusView {
  daemon: { pid: number; started_at: string; config_file: string; state_dir: string; concurrency: number; live: number; queued: number; shutting_down: boolean };
  jobs: JobStatus[];
}

export interface RunDetail {
  run: RunView;
  samples: SampleRow[];
  events: Array<Omit<EventRow, 'at'> & { at: string }>;
}

/** What the API drives; the Daemon implements it. */
export interface ControlTarget {
  status(): StatusView;
  startJob(job: string): RunView;
  /** A start with dependency awareness (`withDeps`: run the dependencies first, in a new cycle). */
  start?(job: string, options: { withDeps: boolean }): StartResult;
  /** One dependency cycle. */
  cycle?(id: string): CycleView;
  stopJob(job: string): Promise<RunView[]>;
  stopRun(runId: string): Promise<RunView>;
  restartJob(job: string): Promise<RunView>;
  listRuns(filter: RunFilter): RunView[];
  runDetail(runId: string): RunDetail;
  /** The run's log file and whether more may still be written to it. */
  runLog(runId: string): { file: string | null; finished: () => boolean };
  reload(): { changes: string[]; file: string };
  shutdown(): void;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function positiveInt(value: string | null, name: string): number | undefined {
  if (value === null || value === '') return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new ControlError(400, `${name} must be a positive integer, got '${value}'`);
  return Number(value);
}

async function streamLog(res: http.ServerResponse, target: ControlTarget, runId: string, follow: boolean, offset: number): Promise<void> {
  const { file, finished } = target.runLog(runId);
  if (!follow) {
    if (!file || !existsSync(file)) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    createReadStream(file, { start: offset }).on('error', () => res.end()).pipe(res);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  let closed = false;
  res.on('close', () => {
    closed = true;
  });
  let position = offset;
  const buffer = Buffer.alloc(64 * 1024);
  while (!closed) {
    // Read `finished` before reading the file, so the last bytes written before the end are not missed.
    const done = finished();
    if (file && existsSync(file)) {
      const fd = openSync(file, 'r');
      try {
        for (;;) {
          const n = readSync(fd, buffer, 0, buffer.length, position);
          if (n <= 0) break;
          position += n;
          if (!res.write(Buffer.from(buffer.subarray(0, n)))) await new Promise((resolve) => res.once('drain', resolve));
          if (closed) break;
        }
      } finally {
        closeSync(fd);
      }
    }
    if (done) break;
    await sleep(200);
  }
  res.end();
}

/** The request handler of the /v1 API; reusable by any http server. */
export function createControlHandler(target: ControlTarget): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    handle(target, req, res).catch((error: unknown) => {
      const status = error instanceof ControlError ? error.status : 500;
      const message = error instanceof Error ? error.message : String(error);
      if (!res.headersSent) sendJson(res, status, { error: message });
      else res.end();
    });
  };
}

async function handle(target: ControlTarget, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://duckvisord');
  const method = req.method ?? 'GET';
  const parts = url.pathname.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  if (parts[0] !== 'v1') throw new ControlError(404, `unknown path ${url.pathname}; the API lives under /v1`);
  const route = parts.slice(1);
  // Drain any request body; the API takes its arguments from the path and query.
  req.resume();
  const is = (m: string, ...shape: string[]) =>
    method === m && route.length === shape.length && shape.every((s, i) => s.startsWith(':') || s === route[i]);

  if (is('GET', 'status')) return sendJson(res, 200, target.status());
  if (is('POST', 'jobs', ':job', 'start')) {
    const withDeps = ['1', 'true', 'yes'].includes(url.searchParams.get('with_deps') ?? '');
    if (target.start) return sendJson(res, 202, target.start(route[1]!, { withDeps }));
    if (withDeps) throw new ControlError(501, 'this daemon does not support starts with dependencies');
    return sendJson(res, 202, { run: target.startJob(route[1]!), cycle: null, warning: null });
  }
  if (is('GET', 'cycles', ':id')) {
    if (!target.cycle) throw new ControlError(501, 'this daemon does not track dependency cycles');
    return sendJson(res, 200, target.cycle(route[1]!));
  }
  if (is('POST', 'jobs', ':job', 'stop')) return sendJson(res, 200, { runs: await target.stopJob(route[1]!) });
  if (is('POST', 'jobs', ':job', 'restart')) return sendJson(res, 202, { run: await target.restartJob(route[1]!) });
  if (is('POST', 'runs', ':id', 'stop')) return sendJson(res, 200, { run: await target.stopRun(route[1]!) });
  if (is('GET', 'history')) {
    const q = url.searchParams;
    const filter: RunFilter = { limit: positiveInt(q.get('limit'), 'limit') ?? 20 };
    if (q.get('job')) filter.job = q.get('job')!;
    if (q.get('state')) filter.state = q.get('state')!;
    if (q.get('reason')) filter.reason = q.get('reason')!;
    return sendJson(res, 200, { runs: target.listRuns(filter) });
  }
  if (is('GET', 'runs', ':id')) return sendJson(res, 200, target.runDetail(route[1]!));
  if (is('GET', 'runs', ':id', 'log')) {
    const follow = ['1', 'true', 'yes'].includes(url.searchParams.get('follow') ?? '');
    const offset = url.searchParams.get('offset');
    return streamLog(res, target, route[1]!, follow, offset && /^\d+$/.test(offset) ? Number(offset) : 0);
  }
  if (is('POST', 'reload')) return sendJson(res, 200, target.reload());
  if (is('POST', 'shutdown')) {
    sendJson(res, 202, { ok: true, message: 'shutting down: stopping live runs with their grace period' });
    setImmediate(() => target.shutdown());
    return;
  }
  const known = ['GET status', 'POST jobs/:job/start[?with_deps=1]|stop|restart', 'GET cycles/:id', 'POST runs/:id/stop', 'GET history', 'GET runs/:id', 'GET runs/:id/log', 'POST reload', 'POST shutdown'];
  throw new ControlError(route.length > 0 && ['status', 'jobs', 'runs', 'cycles', 'history', 'reload', 'shutdown'].includes(route[0]!) ? 405 : 404,
    `no route ${method} ${url.pathname}; known routes under /v1: ${known.join(', ')}`);
}

/** Thrown when a live daemon already answers on the control socket. */
export class SocketInUseError extends Error {
  override name = 'SocketInUseError';
  constructor(readonly socketPath: string) {
    super(`another daemon is answering on the control socket ${socketPath}; stop it first (duckvisorctl --socket ${socketPath} shutdown) or set control.socket elsewhere`);
  }
}

/** True when something accepts connections on the unix socket. */
export function socketAnswers(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(true); // something holds it but is slow: treat as live rather than steal it
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

export interface ControlServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

/** Listens on `socketPath` with mode 0600 from birth; removes a stale socket file, refuses a live one. */
export async function listenControlSocket(socketPath: string, handler: http.RequestListener): Promise<ControlServer> {
  mkdirSync(path.dirname(socketPath), { recursive: true });
  if (existsSync(socketPath)) {
    const stat = statSync(socketPath);
    if (!stat.isSocket()) throw new Error(`control.socket ${socketPath} exists and is not a socket; remove it or choose another path`);
    if (await socketAnswers(socketPath)) throw new SocketInUseError(socketPath);
    unlinkSync(socketPath);
  }
  const server = http.createServer(handler);
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    const previous = process.umask(0o177);
    try {
      server.once('error', reject);
      server.listen({ path: socketPath }, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
  return {
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
