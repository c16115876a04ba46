// Alert hooks with real processes and a real HTTP receiver: JSON on stdin + DUCKVISOR_* env for commands,
// JSON POST with `text` for webhooks, timeouts that kill the hook's whole process group, retries, and no
// shell anywhere.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { projectRoot } from '../supervisor/paths.js';
import { AlertDispatcher, buildAlertEvent, type AlertDelivery, type AlertEvent, type AlertPayload } from '../supervisor/alerts.js';
import type { AlertConfig } from '../supervisor/types.js';

const hook = path.join(projectRoot, 'test', 'fixtures', 'alert-hook.mjs');

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(os.tmpdir() + '/dv-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const memoryKill: AlertPayload = {
  job: 'mlflow-runs',
  run: 'r-42',
  attempt: 2,
  reason: 'memory',
  detail: 'tree RSS over the limit',
  measured: 1288490188,
  limit: 1073741824,
  progress: { done: 120, total: 500, unit: 'runs' },
  logTail: Array.from({ length: 30 }, (_, i) => `line ${i + 1}`),
};

/** Waits until `predicate` holds (polling), failing after `ms`. */
async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Kills whatever the hang fixture started, if a test failed before the dispatcher did. */
function killRecordedPids(t: { teardown(fn: () => void): void }, pidFile: string): void {
  t.teardown(() => {
    if (!fs.existsSync(pidFile)) return;
    const pids = JSON.parse(fs.readFileSync(pidFile, 'utf8')) as Record<string, number>;
    for (const pid of Object.values(pids)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as expected
      }
    }
  });
}

/** Dead = no /proc entry, or a zombie waiting for a reaper that is not us. */
function isDead(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

test('a command hook gets the event as JSON on stdin and as DUCKVISOR_* variables, without NOTIFY_SOCKET', async (t) => {
  const dir = tempDir(t);
  const out = path.join(dir, 'event.json');
  const deliveries: AlertDelivery[] = [];
  const alerts: AlertConfig[] = [{ on: ['killed'], command: [process.execPath, hook, 'record', out], timeout: 10_000, retries: 0 }];
  const dispatcher = new AlertDispatcher(alerts, (d) => deliveries.push(d), { env: { ...process.env, NOTIFY_SOCKET: '/run/systemd/notify' }, host: 'box1' });

  t.is(dispatcher.dispatch('killed', memoryKill), 1);
  t.is(dispatcher.dispatch('succeeded', memoryKill), 0, 'not subscribed');
  t.is(deliveries.length, 0, 'dispatch returns before anything is delivered');
  await until(() => deliveries.length === 1, 10_000, 'the delivery record');

  t.deepEqual(deliveries, [{ kind: 'killed', alert: `command: ${process.execPath}`, ok: true, detail: 'exit 0', attempt: 1 }]);
  const seen = JSON.parse(fs.readFileSync(out, 'utf8')) as { stdin: string; env: Record<string, string> };
  const event = JSON.parse(seen.stdin) as AlertEvent;
  t.like(event, { event: 'killed', job: 'mlflow-runs', run: 'r-42', attempt: 2, reason: 'memory', measured: 1288490188, limit: 1073741824, host: 'box1' });
  t.deepEqual(event.last_progress, { done: 120, total: 500, unit: 'runs' });
  t.is(event.log_tail.length, 20);
  t.is(event.log_tail[0], 'line 11');
  t.is(event.log_tail[19], 'line 30');
  t.regex(event.text, /job mlflow-runs run r-42 \(attempt 2\): killed \(memory\): 1\.2 GiB vs limit 1(\.0)? GiB/);
  t.false(Number.isNaN(Date.parse(event.time)));
  t.deepEqual(seen.env, {
    DUCKVISOR_EVENT: 'killed',
    DUCKVISOR_JOB: 'mlflow-runs',
    DUCKVISOR_RUN_ID: 'r-42',
    DUCKVISOR_ATTEMPT: '2',
    DUCKVISOR_REASON: 'memory',
    DUCKVISOR_MEASURED: '1288490188',
    DUCKVISOR_LIMIT: '1073741824',
    DUCKVISOR_HOST: 'box1',
    DUCKVISOR_TEXT: event.text,
  });
});

test('a webhook receives a JSON POST with a Slack-compatible text; a failing one is retried', async (t) => {
  const bodies: Array<{ body: AlertEvent; type: string | undefined }> = [];
  let failuresLeft = 1;
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      bodies.push({ body: JSON.parse(text) as AlertEvent, type: req.headers['content-type'] });
      if (failuresLeft-- > 0) {
        res.writeHead(503).end('busy');
      } else {
        res.writeHead(200).end('ok');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const deliveries: AlertDelivery[] = [];
  const url = `http://127.0.0.1:${port}/hooks/abc?secret=s3cr3t`;
  const dispatcher = new AlertDispatcher([{ on: ['killed'], webhook: url, timeout: 5000, retries: 2 }], (d) => deliveries.push(d), { backoff: 50 });

  dispatcher.dispatch('killed', memoryKill);
  await until(() => deliveries.some((d) => d.ok), 10_000, 'a successful delivery');

  t.is(bodies.length, 2);
  t.is(bodies[1]!.type, 'application/json');
  t.like(bodies[1]!.body, { event: 'killed', job: 'mlflow-runs', reason: 'memory' });
  t.regex(bodies[1]!.body.text, /killed \(memory\)/);
  t.is(deliveries.length, 2);
  t.like(deliveries[0], { ok: false, attempt: 1, alert: `webhook: http://127.0.0.1:${port}/hooks/abc` });
  t.regex(deliveries[0]!.detail, /^HTTP 503: busy; will retry in /);
  t.like(deliveries[1], { ok: true, attempt: 2, detail: 'HTTP 200' });
  t.false(JSON.stringify(deliveries).includes('s3cr3t'), 'webhook secrets stay out of history');
});

test('a hook that hangs is killed at its timeout, with its whole process group, and the failure is recorded', async (t) => {
  const dir = tempDir(t);
  const pidFile = path.join(dir, 'pids.json');
  const deliveries: AlertDelivery[] = [];
  const dispatcher = new AlertDispatcher([{ on: ['failed'], command: [process.execPath, hook, 'hang', pidFile], timeout: 1500, retries: 0 }], (d) => deliveries.push(d));
  killRecordedPids(t, pidFile);

  dispatcher.dispatch('failed', { ...memoryKill, reason: 'crash', measured: null, limit: null });
  await until(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').length > 0, 10_000, 'the hook to start');
  const pids = JSON.parse(fs.readFileSync(pidFile, 'utf8')) as { hook: number; grandchild: number };
  t.false(isDead(pids.hook));
  t.false(isDead(pids.grandchild));

  await until(() => deliveries.length === 1, 15_000, 'the failure record');
  t.like(deliveries[0], { kind: 'failed', ok: false, attempt: 1 });
  t.regex(deliveries[0]!.detail, /timed out after 1\.5s; process group killed; giving up after 1 attempt/);
  await until(() => isDead(pids.hook) && isDead(pids.grandchild), 5000, 'the hook and its grandchild to die');
  t.pass();
});

test('shell metacharacters in job names, reasons and arguments do no harm', async (t) => {
  const dir = tempDir(t);
  const marker = path.join(dir, 'pwned');
  const victim = path.join(dir, 'x');
  fs.writeFileSync(victim, 'still here');
  const out = path.join(dir, 'event.json');
  const hostile = `$(touch ${marker})`;
  const deliveries: AlertDelivery[] = [];
  const argv = [process.execPath, hook, 'record', out, `; touch ${marker}`, '`touch ' + marker + '`'];
  const dispatcher = new AlertDispatcher([{ on: ['killed'], command: argv, timeout: 10_000, retries: 0 }], (d) => deliveries.push(d));

  dispatcher.dispatch('killed', { ...memoryKill, job: `job${hostile}`, reason: `; rm -rf ${victim}`, detail: `| touch ${marker} && echo` });
  await until(() => deliveries.length === 1, 10_000, 'the delivery');

  t.true(deliveries[0]!.ok, deliveries[0]!.detail);
  t.false(fs.existsSync(marker), 'nothing was executed by a shell');
  t.true(fs.existsSync(victim));
  const seen = JSON.parse(fs.readFileSync(out, 'utf8')) as { argv: string[]; stdin: string; env: Record<string, string> };
  t.is(seen.env.DUCKVISOR_JOB, `job${hostile}`);
  t.is(seen.env.DUCKVISOR_REASON, `; rm -rf ${victim}`);
  t.deepEqual(seen.argv, argv.slice(4));
  t.is((JSON.parse(seen.stdin) as AlertEvent).job, `job${hostile}`);
});

test('failures are recorded with the reason: missing program, non-zero exit, unreachable webhook', async (t) => {
  const deliveries: AlertDelivery[] = [];
  const dispatcher = new AlertDispatcher(
    [
      { on: ['retries_exhausted'], command: ['/nonexistent/hook'], timeout: 5000, retries: 0 },
      { on: ['retries_exhausted'], command: [process.execPath, hook, 'fail'], timeout: 5000, retries: 1 },
      { on: ['retries_exhausted'], webhook: 'http://127.0.0.1:1/refused', timeout: 5000, retries: 0 },
    ],
    (d) => deliveries.push(d),
    { backoff: 20 },
  );
  t.is(dispatcher.dispatch('retries_exhausted', memoryKill), 3);
  await until(() => deliveries.length === 4, 15_000, 'four delivery records');
  const byAlert = (prefix: string) => deliveries.filter((d) => d.alert.startsWith(prefix));
  t.regex(byAlert('command: /nonexistent')[0]!.detail, /cannot run \/nonexistent\/hook.*ENOENT.*giving up after 1 attempt/s);
  const failing = byAlert(`command: ${process.execPath}`);
  t.is(failing.length, 2);
  t.regex(failing[0]!.detail, /^exit 3: hook refused the event; will retry in/);
  t.regex(failing[1]!.detail, /^exit 3: hook refused the event; giving up after 2 attempts/);
  t.false(byAlert('webhook:')[0]!.ok);
  t.true(deliveries.every((d) => !d.ok));
});

test('drain() waits for deliveries, then kills what still runs', async (t) => {
  const dir = tempDir(t);
  const pidFile = path.join(dir, 'pids.json');
  const deliveries: AlertDelivery[] = [];
  const dispatcher = new AlertDispatcher([{ on: ['killed'], command: [process.execPath, hook, 'hang', pidFile], timeout: 60_000, retries: 3 }], (d) => deliveries.push(d));
  killRecordedPids(t, pidFile);
  dispatcher.dispatch('killed', memoryKill);
  await until(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').length > 0, 10_000, 'the hook to start');
  const pids = JSON.parse(fs.readFileSync(pidFile, 'utf8')) as { hook: number; grandchild: number };

  t.is(await dispatcher.drain(300), 1);
  await until(() => isDead(pids.hook) && isDead(pids.grandchild), 5000, 'the hook group to die');
  t.is(deliveries.length, 1, 'no retry once draining');
  t.false(deliveries[0]!.ok);
  t.is(dispatcher.dispatch('killed', memoryKill), 0, 'nothing new is accepted after drain');
});

test('the event text names what matters in units people read', (t) => {
  const event = buildAlertEvent('stalled_warning', { job: 'j', run: 'r', attempt: 1, reason: 'stalled', measured: 90_000, limit: 120_000 }, 'h');
  t.is(event.text, '[duckvisor@h] job j run r (attempt 1): stalled_warning (stalled): 1m30s vs limit 2m00s');
  t.is(buildAlertEvent('succeeded', { job: 'j', run: null, attempt: null, reason: null }, 'h').text, '[duckvisor@h] job j: succeeded');
});
