// The Python client over real IPC: hello/progress parse as protocol messages, beats stop when the
// interpreter is frozen, `stop` is honoured, and without IPC it prints [HEARTBEAT] lines.
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { execa } from 'execa';
import { parseChildMessage } from '../extractors/sdk/protocol.js';
import { pythonWorker, spawnChild } from './sdk-harness.js';

const env = { DUCKVISOR_HEARTBEAT_TIMEOUT_MS: '300', DUCKVISOR_JOB: 'py-job' };

test('hello and progress arrive over IPC and parse as protocol messages', async (t) => {
  const child = spawnChild(t, 'python3', [pythonWorker, 'count'], env);
  const result = await child.process;
  t.is(result.exitCode, 0, result.all);
  for (const message of child.messages) t.true(parseChildMessage(message).ok, JSON.stringify(message));
  t.like(child.messages[0], { type: 'hello', protocol: 1, extractor: 'py-worker', pid: child.process.pid });
  const progress = child.messages.filter((message) => message['type'] === 'progress');
  t.deepEqual(progress, [1, 2, 3].map((done) => ({ type: 'progress', done, total: 3, unit: 'items' })));
  t.true(child.messages.some((message) => message['type'] === 'heartbeat'), 'heartbeats flow while it works');
});

test('a frozen interpreter stops beating', async (t) => {
  const child = spawnChild(t, 'python3', [pythonWorker, 'freeze'], env);
  await child.waitFor((message) => message['type'] === 'log' && message['msg'] === 'freezing now');
  const beatsBefore = child.messages.filter((message) => message['type'] === 'heartbeat').length;
  t.true(beatsBefore > 0, 'it was beating before the freeze');
  // Wait until the process is stopped (state T in /proc), then watch for 10 beat intervals.
  const { readFile } = await import('node:fs/promises');
  for (;;) {
    const stat = await readFile(`/proc/${child.process.pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) break;
    await sleep(20);
  }
  const seen = child.messages.length;
  await sleep(1000);
  t.is(child.messages.length, seen, 'no message at all while frozen');
  child.process.kill('SIGKILL');
  t.is((await child.process).signal, 'SIGKILL');
});

test('stop from the supervisor sets the flag and the script exits cleanly', async (t) => {
  const child = spawnChild(t, 'python3', [pythonWorker, 'until-stop'], env);
  await child.waitFor((message) => message['type'] === 'progress' && Number(message['done']) >= 3);
  await child.process.sendMessage({ type: 'stop', reason: 'operator' });
  const result = await child.process;
  t.is(result.exitCode, 0, result.all);
  t.truthy(child.messages.find((message) => message['type'] === 'log' && String(message['msg']).startsWith('stopping after')));
});

test('the script exits when the supervisor closes the channel (IPC EOF)', async (t) => {
  const child = spawnChild(t, 'python3', [pythonWorker, 'idle'], env);
  await child.waitFor((message) => message['type'] === 'hello');
  child.process.disconnect();
  const result = await child.process;
  t.is(result.exitCode, 70);
  t.regex(result.all ?? '', /IPC channel closed by the supervisor/);
});

test('without IPC it prints [HEARTBEAT] done/total lines', async (t) => {
  const result = await execa('python3', [pythonWorker, 'count'], { env, reject: false });
  t.is(result.exitCode, 0, result.stderr);
  const lines = result.stdout.split('\n').filter((line) => line.startsWith('[HEARTBEAT]'));
  t.true(lines.includes('[HEARTBEAT] 3/3'), result.stdout);
  for (const line of lines) t.regex(line, /^\[HEARTBEAT\] \d+\/(\d+|\?)$/);
});
