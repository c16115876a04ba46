// Helpers for end-to-end operations tests and benches against the real `duckvisord` binary: a daemon
// started with a chosen environment (NOTIFY_SOCKET, WATCHDOG_USEC), a systemd notification listener,
// a local webhook receiver, a swap file, a free TCP port, and a teardown that kills whole process groups.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { daemonBin, fixture, waitFor, type DaemonProcess } from './duckvisord.js';

/** Starts duckvisord with exactly `env` (the caller decides which systemd variables it sees). */
export function spawnDaemonWithEnv(config: string, env: NodeJS.ProcessEnv): DaemonProcess {
  const child = spawn(process.execPath, [daemonBin, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, output: () => output, exited };
}

/** process.env without the variables systemd would hand a service. */
export function envWithoutSystemd(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']) delete env[key];
  return { ...env, ...extra };
}

/** One datagram seen by test/fixtures/notify_listener.py. */
export interface Notification {
  /** Arrival, ms since epoch (listener's clock = ours). */
  t: number;
  /** The datagram's lines, e.g. ['READY=1', 'STATUS=…', 'MAINPID=…']. */
  lines: string[];
  /** Sender pid from SCM_CREDENTIALS. */
  pid: number | null;
}

export interface NotifyListener {
  socket: string;
  received: Notification[];
  /** Notifications containing `line` exactly (e.g. 'WATCHDOG=1'). */
  with(line: string): Notification[];
  close(): void;
}

/** Binds a datagram listener standing in for systemd's NOTIFY_SOCKET. */
export async function startNotifyListener(socket: string): Promise<NotifyListener> {
  const child: ChildProcess = spawn('python3', [fixture('notify_listener.py'), socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  const received: Notification[] = [];
  let listening = false;
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      const parsed = JSON.parse(line) as { listening?: string; t?: number; data?: string; pid?: number | null };
      if (parsed.listening) listening = true;
      else received.push({ t: parsed.t!, lines: parsed.data!.split('\n').filter(Boolean), pid: parsed.pid ?? null });
    }
  });
  await waitFor(() => listening, 10_000, 'the notify listener to bind');
  return {
    socket,
    received,
    with: (line) => received.filter((n) => n.lines.includes(line)),
    close: () => {
      child.stdin!.end();
      child.kill('SIGTERM');
    },
  };
}

/** A POST seen by the local webhook receiver. */
export interface WebhookHit {
  receivedAt: number;
  url: string;
  contentType: string | undefined;
  body: any;
}

/** A local HTTP server recording every POST (answers 200). */
export async function startWebhookReceiver(): Promise<{ url: string; hits: WebhookHit[]; close: () => Promise<void> }> {
  const hits: WebhookHit[] = [];
  const server = http.createServer((req, res) => {
    const receivedAt = Date.now();
    let text = '';
    req.on('data', (chunk) => (text += chunk));
    req.on('end', () => {
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // kept as text; the test will say so
      }
      hits.push({ receivedAt, url: req.url ?? '', contentType: req.headers['content-type'], body });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A TCP port free right now on 127.0.0.1 (for control.http). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** SIGKILLs a process group (negative pid) and the pid itself; silent when gone. */
export function killGroup(pid: number | null | undefined): void {
  if (!pid) return;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Stops a daemon: SIGTERM, up to `ms` for it to exit, then SIGKILL. */
export async function stopDaemon(daemon: DaemonProcess, ms = 10_000): Promise<void> {
  if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) return;
  daemon.child.kill('SIGTERM');
  const timer = new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
  await Promise.race([daemon.exited, timer]);
  killGroup(daemon.child.pid);
}

/** One JSON document per line; lines that are not complete JSON yet are skipped. */
export function readJsonLines<T = any>(file: string): T[] {
  if (!existsSync(file)) return [];
  const out: T[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // a line being written
    }
  }
  return out;
}

export { enableSwapFile } from './swap-file.js';
