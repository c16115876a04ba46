import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { listenControlSocket, SocketInUseError, socketAnswers } from '../supervisor/control.js';
import { ctl, fixture, killQuietly, spawnDaemon, startDaemon, writeConfig } from './helpers/duckvisord.js';

const okHandler: http.RequestListener = (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end('{"ok":true}');
};

function get(socketPath: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: urlPath }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('the control socket is created with mode 0600 even under a permissive umask', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-ctl-'));
  const socketPath = path.join(dir, 'sub', 'dv.sock');
  const previous = process.umask(0o000);
  let server;
  try {
    server = await listenControlSocket(socketPath, okHandler);
  } finally {
    process.umask(previous);
  }
  t.teardown(() => server.close());
  t.is(statSync(socketPath).mode & 0o777, 0o600);
  t.true(statSync(socketPath).isSocket());
  t.is(process.umask(), previous, 'umask restored');
  t.deepEqual(await get(socketPath, '/v1/status'), { status: 200, body: '{"ok":true}' });
});

test('a stale socket file (its owner was SIGKILLed) is replaced; a live one is refused', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-ctl-'));
  const socketPath = path.join(dir, 'dv.sock');
  // A real process listens, then dies by SIGKILL: the socket file stays behind and nobody answers.
  const owner = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => killQuietly(owner.pid));
  await new Promise((resolve) => owner.stdout!.once('data', resolve));
  t.true(await socketAnswers(socketPath));
  await t.throwsAsync(listenControlSocket(socketPath, okHandler), { instanceOf: SocketInUseError, message: /another daemon is answering on the control socket/ });
  owner.kill('SIGKILL');
  await new Promise((resolve) => owner.once('exit', resolve));
  t.true(existsSync(socketPath), 'SIGKILL left the socket file behind');
  t.false(await socketAnswers(socketPath));
  const server = await listenControlSocket(socketPath, okHandler);
  t.teardown(() => server.close());
  t.is((await get(socketPath, '/v1/anything')).status, 200);
  t.is(statSync(socketPath).mode & 0o777, 0o600);
});

test('a second daemon on the same state dir refuses to start with a clear message', async (t) => {
  const jobs = `  idle:\n    command: [node, ${JSON.stringify(fixture('sleeper.mjs'))}, forever]\n    heartbeat: none\n`;
  const first = writeConfig(jobs);
  const daemon = await startDaemon(first.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  // Same state_dir, different socket: only the state-dir lock can stop it.
  const second = writeConfig(jobs, '', mkdtempSync(path.join(os.tmpdir(), 'dv-')));
  const { writeFileSync, readFileSync } = await import('node:fs');
  writeFileSync(second.config, readFileSync(second.config, 'utf8').replace('state_dir: ./state', `state_dir: ${first.stateDir}`));
  const rival = spawnDaemon(second.config);
  const exit = await rival.exited;
  t.is(exit.code, 1);
  t.regex(rival.output(), new RegExp(`another duckvisord \\(pid ${daemon.child.pid}\\) is already running on state dir ${first.stateDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  t.false(existsSync(second.socket), 'the refused daemon did not create its socket');
  // The first daemon is unharmed.
  t.is((await ctl(['--config', first.config, 'status', '--json'])).code, 0);
  // And a daemon on the same socket (other state dir) is refused too.
  const third = writeConfig(jobs);
  writeFileSync(third.config, readFileSync(third.config, 'utf8').replace('socket: ./run/dv.sock', `socket: ${first.socket}`));
  const socketRival = spawnDaemon(third.config);
  t.is((await socketRival.exited).code, 1);
  t.regex(socketRival.output(), /another daemon is answering on the control socket/);
  await ctl(['--config', first.config, 'shutdown']);
  await daemon.exited;
});

test('a stale daemon.lock from a dead daemon is replaced', async (t) => {
  const paths = writeConfig(`  idle:\n    command: [node, ${JSON.stringify(fixture('sleeper.mjs'))}, "0.2", "2"]\n    heartbeat: none\n`);
  const { mkdirSync, writeFileSync } = await import('node:fs');
  mkdirSync(paths.stateDir, { recursive: true });
  // pid 2^22-1 is above the default pid_max region used here and is not alive.
  writeFileSync(path.join(paths.stateDir, 'daemon.lock'), '4194303 12345\n');
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  t.is((await ctl(['--config', paths.config, 'shutdown'])).code, 0);
  const exit = await daemon.exited;
  t.is(exit.code, 0);
  t.false(existsSync(path.join(paths.stateDir, 'daemon.lock')), 'the lock is released on exit');
});
