// SystemdNotifier against a REAL AF_UNIX datagram socket (a Python stand-in for systemd's NOTIFY_SOCKET):
// READY=1, periodic WATCHDOG=1, STOPPING=1, and no pings while the main event loop is blocked.
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { projectRoot } from '../supervisor/paths.js';
import { SystemdNotifier, stripSystemdEnv, watchdogIntervalFromEnv } from '../supervisor/notify.js';

const fixtures = path.join(projectRoot, 'test', 'fixtures');
const haveNotify = spawnSync('systemd-notify', ['--help'], { stdio: 'ignore' }).status === 0;
const havePython = spawnSync('python3', ['-c', 'import socket; socket.SCM_CREDENTIALS'], { stdio: 'ignore' }).status === 0;

interface Datagram {
  t: number;
  data: string;
  pid: number | null;
}

function startListener(socketPath: string): Promise<{ child: ChildProcess; datagrams: Datagram[] }> {
  const child = spawn('python3', [path.join(fixtures, 'notify_listener.py'), socketPath], { stdio: ['pipe', 'pipe', 'inherit'] });
  const datagrams: Datagram[] = [];
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`listener exited early with ${code}`)));
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as Datagram & { listening?: string };
      if (parsed.listening) resolve({ child, datagrams });
      else datagrams.push(parsed);
    });
  });
}

function runDriver(env: NodeJS.ProcessEnv): Promise<Array<Record<string, unknown>>> {
  const child = spawn(process.execPath, [path.join(fixtures, 'notify-driver.mjs')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Array<Record<string, unknown>> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(lines) : reject(new Error(`driver exited with ${code}`))));
  });
}

const realSocketTest = haveNotify && havePython ? test : test.skip;
if (!haveNotify) console.log('notify test skipped: systemd-notify is not installed');
if (!havePython) console.log('notify test skipped: python3 with AF_UNIX credentials is not available');

realSocketTest('READY, periodic WATCHDOG, STOPPING reach a real NOTIFY_SOCKET; a blocked loop stops the pings', async (t) => {
  const dir = fs.mkdtempSync(os.tmpdir() + '/dv-');
  const socketPath = path.join(dir, 'notify.sock');
  const { child: listener, datagrams } = await startListener(socketPath);
  t.teardown(() => {
    listener.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '1000000' };
  delete env.WATCHDOG_PID;
  const lines = await runDriver(env);
  // Give the listener a moment to print the last datagrams.
  await new Promise((resolve) => setTimeout(resolve, 300));

  const phase = (name: string) => lines.find((line) => line.phase === name)!;
  t.like(phase('config'), { enabled: true, interval: 500, watching: true });
  const driverPid = phase('start').pid as number;
  const start = phase('start').t as number;
  const blockStart = phase('block-start').t as number;
  const blockEnd = phase('block-end').t as number;
  const stopped = phase('stopped').t as number;
  t.like(phase('stats'), { failed: 0, warnings: [] });

  const messages = datagrams.filter((d) => d.data !== 'BARRIER=1');
  const ready = messages.find((d) => d.data.split('\n').includes('READY=1'));
  t.truthy(ready, 'READY=1 received');
  t.true(ready!.data.includes('STATUS=driver up'));
  // --pid=<daemon pid>: the datagram names the daemon as MAINPID and carries its credentials (root may set them).
  t.true(ready!.data.includes(`MAINPID=${driverPid}`));
  if (process.getuid?.() === 0) t.is(ready!.pid, driverPid);

  const pings = messages.filter((d) => d.data.split('\n').includes('WATCHDOG=1')).map((d) => d.t);
  const before = pings.filter((at) => at >= start && at < blockStart);
  t.true(before.length >= 3, `expected >= 3 pings in the 2.5 s before the block, got ${before.length}`);
  // A ping spawned just before the block may still land early in it; from 1 s into the block on, none may arrive.
  const during = pings.filter((at) => at > blockStart + 1000 && at < blockEnd);
  t.is(during.length, 0, `pings arrived while the event loop was blocked: ${during.map((at) => at - blockStart).join(', ')} ms`);
  const after = pings.filter((at) => at > blockEnd && at <= stopped);
  t.true(after.length >= 1, 'pings resume once the loop is free');

  t.truthy(messages.find((d) => d.data.split('\n').includes('STOPPING=1')), 'STOPPING=1 received');
});

test('without NOTIFY_SOCKET every call is a no-op and nothing is spawned', async (t) => {
  const warnings: string[] = [];
  const notifier = new SystemdNotifier({
    env: { WATCHDOG_USEC: '1000000' },
    command: '/nonexistent/systemd-notify',
    log: { warn: (msg) => warnings.push(msg) },
  });
  t.false(notifier.enabled);
  t.is(notifier.watchdogInterval, null);
  notifier.ready('x');
  notifier.status('y');
  notifier.watchdog();
  t.false(notifier.startWatchdog());
  notifier.stopping();
  await notifier.flush(500);
  // A real spawn of the nonexistent command would have produced a failure.
  t.is(notifier.sent + notifier.failed, 0);
  t.deepEqual(warnings, []);
});

test('a failing systemd-notify is logged, not thrown', async (t) => {
  const warnings: Array<Record<string, unknown>> = [];
  const notifier = new SystemdNotifier({
    env: { NOTIFY_SOCKET: '/nonexistent/notify.sock' },
    command: '/nonexistent/systemd-notify',
    log: { warn: (msg, fields) => warnings.push({ msg, ...fields }) },
  });
  t.true(notifier.enabled);
  t.notThrows(() => notifier.ready('up'));
  await notifier.flush(3000);
  t.is(notifier.failed, 1);
  t.is(warnings.length, 1);
  t.regex(String(warnings[0]!.error), /cannot run \/nonexistent\/systemd-notify/);
});

test('WATCHDOG_PID for another process disables our watchdog; the interval is half of WATCHDOG_USEC', (t) => {
  t.is(watchdogIntervalFromEnv({ WATCHDOG_USEC: '30000000' }, 42), 15000);
  t.is(watchdogIntervalFromEnv({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 15000);
  t.is(watchdogIntervalFromEnv({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '43' }, 42), null);
  t.is(watchdogIntervalFromEnv({ WATCHDOG_USEC: 'soon' }, 42), null);
  t.is(watchdogIntervalFromEnv({}, 42), null);
});

test('stripSystemdEnv removes the notify socket and watchdog variables, keeps the rest', (t) => {
  const clean = stripSystemdEnv({ NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '1', WATCHDOG_PID: '2', LISTEN_FDS: '1', PATH: '/bin', HOME: '/root' });
  t.deepEqual(clean, { PATH: '/bin', HOME: '/root' });
});
