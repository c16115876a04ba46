// End-to-end operations tests against the real `duckvisord` binary: systemd notifications and the
// watchdog, alert hooks on a real memory kill (command + webhook), warn_at, kill diagnostics,
// oom_score_adj, thrash kills from real major faults, /metrics, refused reloads, and hostile text in
// alert payloads. Every test drives real processes; nothing here is a stub.
import test from 'ava';
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ctl, ctlJson, fixture, waitFor, type DaemonProcess } from './helpers/duckvisord.js';
import {
  enableSwapFile,
  envWithoutSystemd,
  freePort,
  killGroup,
  readJsonLines,
  spawnDaemonWithEnv,
  startNotifyListener,
  startWebhookReceiver,
  stopDaemon,
  type WebhookHit,
} from './helpers/ops.js';

const MiB = 1024 * 1024;
const q = (text: string) => JSON.stringify(text);
const argv = (...items: string[]) => `[${items.map(q).join(', ')}]`;
const node = process.execPath;

/** Starts the daemon with `env` and waits until `status` answers. */
async function startDaemonWithEnv(config: string, env: NodeJS.ProcessEnv): Promise<DaemonProcess> {
  const daemon = spawnDaemonWithEnv(config, env);
  let exited = false;
  void daemon.exited.then(() => (exited = true));
  await waitFor(async () => {
    if (exited) throw new Error(`duckvisord exited early:\n${daemon.output()}`);
    return (await ctl(['--config', config, 'status', '--json'])).code === 0;
  }, 20_000, 'the daemon to answer status');
  return daemon;
}

/** Waits until a job's shown run is in one of `states`; returns that run. */
async function waitForJobState(config: string, job: string, states: string[], ms = 30_000): Promise<any> {
  return waitFor(async () => {
    const status = await ctlJson(config, 'status');
    const run = status.jobs.find((j: any) => j.job === job)?.run;
    return run && states.includes(run.state) ? run : null;
  }, ms, `job ${job} to be ${states.join('|')}`);
}

/** `duckvisorctl show RUN --json`, split into the run and its events. */
async function showRun(config: string, runId: string): Promise<{ run: any; events: any[] }> {
  const { events, samples: _samples, ...run } = await ctlJson(config, 'show', runId);
  return { run, events };
}

/** `duckvisorctl start JOB --json`: the queued run. */
async function startJob(config: string, job: string): Promise<any> {
  const started = await ctlJson(config, 'start', job);
  if (!started.run) throw new Error(`start ${job} returned no run: ${JSON.stringify(started)}`);
  return started.run;
}

/** Waits until a run is in a terminal state; returns it as `showRun` does. */
async function waitForRunEnd(config: string, runId: string, ms = 30_000): Promise<{ run: any; events: any[] }> {
  return waitFor(async () => {
    const shown = await showRun(config, runId);
    return ['succeeded', 'failed', 'killed', 'interrupted'].includes(shown.run.state) ? shown : null;
  }, ms, `run ${runId} to end`);
}

const tempDirs: string[] = [];
test.after.always(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp dir, removed after the last test of this file. */
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-'));
  tempDirs.push(dir);
  return dir;
}

// ------------------------------------------------------------------------------------------ sd_notify

test.serial('sd_notify: READY after the control socket, periodic WATCHDOG, STATUS summaries, no pings while stopped, STOPPING on shutdown; jobs and hooks do not inherit the systemd variables', async (t) => {
  const dir = tempDir();
  const listener = await startNotifyListener(path.join(dir, 'notify.sock'));
  t.teardown(listener.close);
  const envFile = path.join(dir, 'job-env.json');
  const hookFile = path.join(dir, 'hook.jsonl');
  const config = path.join(dir, 'duckvisor.yaml');
  const socket = path.join(dir, 'run', 'dv.sock');
  writeFileSync(
    config,
    `state_dir: ./state
control:
  socket: ./run/dv.sock
defaults:
  stop_grace: 2s
  retries: {max: 0}
jobs:
  envjob:
    command: ${argv(node, fixture('env-dump.mjs'), envFile)}
    heartbeat: stdout
    autostart: true
alerts:
  - on: [interrupted]
    command: ${argv(node, fixture('alert-append.mjs'), hookFile)}
    timeout: 5s
`,
  );
  const daemon = spawnDaemonWithEnv(config, envWithoutSystemd({ NOTIFY_SOCKET: listener.socket, WATCHDOG_USEC: '1000000' }));
  t.teardown(() => stopDaemon(daemon));
  const pid = daemon.child.pid!;

  const ready = (await waitFor(() => listener.with('READY=1')[0], 20_000, `READY=1 (daemon output:\n${daemon.output()})`))!;
  t.true(existsSync(socket), 'the control socket exists when READY=1 arrives');
  t.true(statSync(socket).ctimeMs <= ready.t, `the control socket was created (${statSync(socket).ctimeMs}) before READY=1 arrived (${ready.t})`);
  t.is((await ctl(['--config', config, 'status', '--json'])).code, 0, 'the control API answers once READY=1 was sent');
  t.is(ready.pid, pid, 'notifications are attributed to the daemon pid (systemd-notify --pid)');
  t.true(ready.lines.includes(`MAINPID=${pid}`), ready.lines.join(' | '));
  t.regex(ready.lines.find((l) => l.startsWith('STATUS='))!, /^STATUS=1 job\(s\) configured$/);

  // The job runs and says what it inherited.
  const running = await waitForJobState(config, 'envjob', ['running']);
  const jobEnv = await waitFor(() => (existsSync(envFile) ? JSON.parse(readFileSync(envFile, 'utf8')) : null), 10_000, 'the job to dump its environment');
  for (const name of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) t.false(name in jobEnv.env, `the job must not inherit ${name}`);
  t.is(jobEnv.env.DUCKVISOR_RUN_ID, running.id);

  // Watchdog cadence: WATCHDOG_USEC = 1 s ⇒ a ping every 500 ms; a loose lower bound over 3 s.
  const windowStart = Date.now();
  await sleep(3000);
  const pingsIn3s = listener.with('WATCHDOG=1').filter((n) => n.t >= windowStart && n.t < windowStart + 3000);
  t.true(pingsIn3s.length >= 3, `expected at least 3 WATCHDOG=1 in 3 s, got ${pingsIn3s.length}`);
  t.log(`WATCHDOG=1 pings in 3 s: ${pingsIn3s.length} (expected ~6 at a 500 ms period)`);

  const statusLines = listener.received.flatMap((n) => n.lines.filter((l) => l.startsWith('STATUS=')));
  t.true(statusLines.some((l) => /^STATUS=1 running, 0 publishing, 0 queued$/.test(l)), `a run summary was sent; STATUS lines: ${statusLines.join(' | ')}`);

  // A stopped main loop sends nothing: SIGSTOP the daemon for 3 s.
  daemon.child.kill('SIGSTOP');
  const stoppedAt = Date.now();
  await sleep(3000);
  const resumedAt = Date.now();
  daemon.child.kill('SIGCONT');
  await sleep(2000);
  // A systemd-notify child spawned just before the stop may still deliver: allow 500 ms for it.
  const duringStop = listener.with('WATCHDOG=1').filter((n) => n.t > stoppedAt + 500 && n.t < resumedAt);
  t.deepEqual(duringStop.map((n) => n.t - stoppedAt), [], 'no WATCHDOG=1 while the daemon is stopped');
  const afterResume = listener.with('WATCHDOG=1').filter((n) => n.t >= resumedAt);
  t.true(afterResume.length >= 2, `pings resume after SIGCONT (got ${afterResume.length} in 2 s)`);

  t.is(listener.with('STOPPING=1').length, 0, 'no STOPPING=1 before shutdown');
  const shutdownAt = Date.now();
  t.is((await ctl(['--config', config, 'shutdown'])).code, 0);
  const stopping = (await waitFor(() => listener.with('STOPPING=1')[0], 20_000, 'STOPPING=1'))!;
  const exit = await daemon.exited;
  t.is(exit.code, 0, daemon.output());
  t.log(`STOPPING=1 arrived ${Math.round(stopping.t - shutdownAt)} ms after duckvisorctl shutdown`);

  // The interrupted run's alert hook also ran without the daemon's systemd variables.
  const hooks = readJsonLines(hookFile);
  t.is(hooks.length, 1, `one interrupted alert; got ${JSON.stringify(hooks)}`);
  t.is(hooks[0].event.event, 'interrupted');
  t.deepEqual(hooks[0].inherited, { NOTIFY_SOCKET: null, WATCHDOG_USEC: null });
});

// sd_notify(3): STOPPING=1 tells systemd the service is "beginning its shutdown"; a shutdown asked for
// through the control API must say so at once, not after every run's stop_grace.
test.serial('sd_notify: STOPPING=1 on `duckvisorctl shutdown` is sent when the shutdown begins, before the runs have stopped', async (t) => {
  const dir = tempDir();
  const listener = await startNotifyListener(path.join(dir, 'notify.sock'));
  t.teardown(listener.close);
  const config = path.join(dir, 'duckvisor.yaml');
  writeFileSync(
    config,
    `state_dir: ./state
control:
  socket: ./run/dv.sock
defaults:
  stop_grace: 3s
  retries: {max: 0}
jobs:
  stubborn:
    command: ${argv(node, fixture('ignore-term.mjs'))}
    heartbeat: none
    autostart: true
`,
  );
  const daemon = spawnDaemonWithEnv(config, envWithoutSystemd({ NOTIFY_SOCKET: listener.socket }));
  const pids: number[] = [];
  t.teardown(async () => {
    await stopDaemon(daemon);
    for (const pid of pids) killGroup(pid);
  });
  await waitFor(() => listener.with('READY=1')[0], 20_000, 'READY=1');
  const run = await waitForJobState(config, 'stubborn', ['running']);
  pids.push(run.pid);
  t.is((await ctl(['--config', config, 'shutdown'])).code, 0);
  const stopping = (await waitFor(() => listener.with('STOPPING=1')[0], 20_000, 'STOPPING=1'))!;
  await daemon.exited;
  const db = new Database(path.join(dir, 'state', 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  const ended = db.prepare("SELECT at FROM events WHERE run_id = ? AND kind = 'state' AND message LIKE 'interrupted%'").get(run.id) as { at: number };
  t.log(`STOPPING=1 arrived ${Math.round(stopping.t - ended.at)} ms after the run was recorded interrupted`);
  t.true(stopping.t < ended.at, 'STOPPING=1 arrives while the SIGTERM-ignoring run is still in its stop_grace');
});

// ------------------------------------------------------------------------- a memory kill, end to end

/** Text a shell would execute; it must arrive in payloads verbatim and create nothing. */
function hostileText(markers: string): { line: string; unit: string; env: string } {
  return {
    line: `evil $(touch ${markers}/dollar) \`touch ${markers}/backtick\` ; touch ${markers}/semicolon && echo | tee ${markers}/pipe > ${markers}/redirect`,
    unit: `$(touch ${markers}/unit)`,
    env: `$(touch ${markers}/env); \`touch ${markers}/env2\``,
  };
}

interface KillScenario {
  dir: string;
  markers: string;
  hostile: ReturnType<typeof hostileText>;
  daemonPid: number;
  daemonOutput: string;
  leak: { id: string; shown: any };
  hookLines: any[];
  webhookHits: WebhookHit[];
  hang: { record: any; pidAliveAfter: boolean };
  steady: { pid: number; oomScoreAdj: number; env: Record<string, string> };
  daemonOomScoreAdj: number;
  metricsAfterKill: string;
  metricsWithQueue: string;
  allAlertEvents: Array<{ run_id: string | null; message: string; data_json: string | null; at: number }>;
}

let scenario: Promise<KillScenario> | null = null;
const scenarioCleanups: Array<() => void | Promise<void>> = [];
test.after.always(async () => {
  for (const cleanup of scenarioCleanups.reverse()) await cleanup();
});

/** Runs once and is shared by the tests below: one daemon, one memory kill with every hook kind. */
function killScenario(): Promise<KillScenario> {
  scenario ??= runKillScenario();
  return scenario;
}

async function runKillScenario(): Promise<KillScenario> {
  const dir = tempDir();
  const markers = path.join(dir, 'pwned');
  mkdirSync(markers);
  const hostile = hostileText(markers);
  const hookFile = path.join(dir, 'hook.jsonl');
  const hangFile = path.join(dir, 'hang.jsonl');
  const envFile = path.join(dir, 'steady-env.json');
  const receiver = await startWebhookReceiver();
  scenarioCleanups.push(receiver.close);
  const httpPort = await freePort();
  const config = path.join(dir, 'duckvisor.yaml');
  writeFileSync(
    config,
    `state_dir: ./state
concurrency: 2
control:
  socket: ./run/dv.sock
  http: 127.0.0.1:${httpPort}
defaults:
  stop_grace: 2s
  warn_at: 0.8
  retries: {max: 0}
jobs:
  leak:
    # ~40 MiB/s from a ~50 MiB Node baseline: 80% (120 MiB) is crossed ~0.75 s before the limit.
    command: ${argv(node, fixture('ops-leaker.mjs'), '40', hostile.unit, hostile.line)}
    heartbeat: ipc
    autostart: false
    limits: {rss: 150MiB}
  steady:
    command: ${argv(node, fixture('env-dump.mjs'), envFile)}
    heartbeat: stdout
    autostart: true
    env:
      DV_NOTE: ${q(hostile.env)}
  blocker:
    command: ${argv(node, fixture('sleeper.mjs'), 'forever', '50')}
    heartbeat: stdout
    autostart: false
  waiting:
    command: ${argv(node, fixture('sleeper.mjs'), 'forever', '50')}
    heartbeat: stdout
    autostart: false
alerts:
  - on: [killed, warning]
    command: ${argv(node, fixture('alert-append.mjs'), hookFile)}
    timeout: 10s
  - on: [killed]
    webhook: ${receiver.url}/hooks/duckvisor?token=s3cret
    timeout: 5s
  - on: [killed]
    command: ${argv(node, fixture('alert-append.mjs'), hangFile, 'hang')}
    timeout: 1s
    retries: 0
`,
  );
  const daemon = await startDaemonWithEnv(config, envWithoutSystemd());
  const daemonPid = daemon.child.pid!;
  const runPids: number[] = [];
  scenarioCleanups.push(async () => {
    await stopDaemon(daemon);
    for (const pid of runPids) killGroup(pid);
  });

  const steadyRun = await waitForJobState(config, 'steady', ['running']);
  runPids.push(steadyRun.pid);
  const steadyEnv = await waitFor(() => (existsSync(envFile) ? JSON.parse(readFileSync(envFile, 'utf8')) : null), 10_000, 'steady to dump its env');
  const steadyOom = Number(readFileSync(`/proc/${steadyRun.pid}/oom_score_adj`, 'utf8'));
  const daemonOom = Number(readFileSync(`/proc/${daemonPid}/oom_score_adj`, 'utf8'));

  const started = await startJob(config, 'leak');
  const leakShown = await waitForRunEnd(config, started.id);
  if (leakShown.run.pid) runPids.push(leakShown.run.pid);

  // Deliveries: the recording hook (warning + killed), the webhook, the hanging hook and its timeout.
  const hookLines = await waitFor(() => {
    const lines = readJsonLines(hookFile);
    return lines.some((l) => l.event.event === 'killed') ? lines : null;
  }, 15_000, 'the command hook to record the killed event');
  await waitFor(() => receiver.hits.length > 0, 15_000, 'the webhook to receive the killed event');
  const hangRecord = await waitFor(() => readJsonLines(hangFile)[0], 15_000, 'the hanging hook to start');
  await waitFor(async () => {
    const db = new Database(path.join(dir, 'state', 'history.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare("SELECT 1 FROM events WHERE kind = 'alert' AND message LIKE '%timed out%'").get();
    } finally {
      db.close();
    }
  }, 15_000, 'the hanging hook to time out');
  await sleep(200);
  const pidAliveAfter = existsSync(`/proc/${hangRecord.pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${hangRecord.pid}/status`, 'utf8'));

  // Metrics right after the kill (steady still running), then with a queue.
  const metricsUrl = `http://127.0.0.1:${httpPort}/metrics`;
  const metricsAfterKill = await (await fetch(metricsUrl)).text();
  const blocker = await startJob(config, 'blocker');
  const blockerRun = await waitForJobState(config, 'blocker', ['running']);
  runPids.push(blockerRun.pid);
  const waiting = await startJob(config, 'waiting');
  await waitFor(async () => (await ctlJson(config, 'status')).daemon.queued === 1, 10_000, 'waiting to be queued behind concurrency 2');
  await sleep(500);
  const metricsWithQueue = await (await fetch(metricsUrl)).text();
  void blocker;
  void waiting;

  const finalShown = await showRun(config, started.id);
  expectCtlOk(await ctl(['--config', config, 'shutdown']));
  const exit = await daemon.exited;
  if (exit.code !== 0) throw new Error(`daemon exited ${exit.code}:\n${daemon.output()}`);
  const db = new Database(path.join(dir, 'state', 'history.sqlite'), { readonly: true });
  const allAlertEvents = db.prepare("SELECT run_id, message, data_json, at FROM events WHERE kind = 'alert' ORDER BY id").all() as KillScenario['allAlertEvents'];
  db.close();
  return {
    dir,
    markers,
    hostile,
    daemonPid,
    daemonOutput: daemon.output(),
    leak: { id: started.id, shown: finalShown },
    hookLines,
    webhookHits: receiver.hits,
    hang: { record: hangRecord, pidAliveAfter },
    steady: { pid: steadyRun.pid, oomScoreAdj: steadyOom, env: steadyEnv.env },
    daemonOomScoreAdj: daemonOom,
    metricsAfterKill,
    metricsWithQueue,
    allAlertEvents,
  };
}

function expectCtlOk(result: { code: number; stderr: string; stdout: string }): void {
  if (result.code !== 0) throw new Error(`duckvisorctl failed (${result.code}): ${result.stderr}${result.stdout}`);
}

test.serial('a memory kill reaches a command hook (stdin JSON + DUCKVISOR_* env) and a webhook with the whole payload', async (t) => {
  t.timeout(90_000);
  const s = await killScenario();
  const run = s.leak.shown.run;
  t.like(run, { job: 'leak', state: 'killed', reason: 'memory', attempt: 1 });
  const killEvent = s.leak.shown.events.find((e: any) => e.kind === 'kill');
  t.truthy(killEvent, 'the kill is an event of the run');
  const killAt = Date.parse(killEvent.at);

  const hook = s.hookLines.find((l) => l.event.event === 'killed');
  const webhook = s.webhookHits.find((h) => h.body?.event === 'killed')!;
  t.truthy(webhook, `webhook got ${JSON.stringify(s.webhookHits.map((h) => h.body))}`);
  t.is(s.webhookHits.filter((h) => h.body?.event === 'killed').length, 1, 'one webhook delivery (it answered 200, no retry)');
  t.regex(webhook.url, /^\/hooks\/duckvisor\?token=s3cret$/);
  t.regex(webhook.contentType ?? '', /^application\/json/);

  for (const [name, event] of [['command', hook.event], ['webhook', webhook.body]] as const) {
    t.like(event, { event: 'killed', job: 'leak', run: run.id, attempt: 1, reason: 'memory', limit: 150 * MiB, host: os.hostname() }, name);
    t.true(event.measured > event.limit, `${name}: measured ${event.measured} > limit ${event.limit}`);
    t.is(event.measured, killEvent.measured, `${name}: the measured value is the one of the kill decision`);
    t.truthy(event.last_progress, `${name}: last progress present`);
    t.true(event.last_progress.done > 0);
    t.is(event.last_progress.total, 1000);
    t.is(event.last_progress.unit, s.hostile.unit);
    t.is(event.log_tail.length, 20, `${name}: the last 20 log lines`);
    t.true(event.log_tail.includes(s.hostile.line), `${name}: log lines verbatim`);
    t.regex(event.text, /job leak run \S+ \(attempt 1\): killed \(memory\): \d+\.\d MiB vs limit 150\.0 MiB/, `${name}: Slack text`);
    t.truthy(Date.parse(event.time));
  }
  t.deepEqual(hook.event, webhook.body, 'both hooks received the same document');
  t.like(hook.env, {
    DUCKVISOR_EVENT: 'killed',
    DUCKVISOR_JOB: 'leak',
    DUCKVISOR_RUN_ID: run.id,
    DUCKVISOR_ATTEMPT: '1',
    DUCKVISOR_REASON: 'memory',
    DUCKVISOR_LIMIT: String(150 * MiB),
    DUCKVISOR_MEASURED: String(hook.event.measured),
    DUCKVISOR_HOST: os.hostname(),
    DUCKVISOR_TEXT: hook.event.text,
  });
  t.deepEqual(hook.inherited, { NOTIFY_SOCKET: null, WATCHDOG_USEC: null });

  t.log(`kill event → command hook received: ${hook.received_at - killAt} ms; → webhook received: ${Math.round(webhook.receivedAt - killAt)} ms`);

  // Every delivery is in history: the killed + warning deliveries of the command hook, the webhook, the hang.
  const messages = s.allAlertEvents.map((e) => e.message);
  t.true(messages.some((m) => /^killed → command: .*node: delivered \(exit 0, try 1\)$/.test(m)), messages.join('\n'));
  t.true(messages.some((m) => /^killed → webhook: http:\/\/127\.0\.0\.1:\d+\/hooks\/duckvisor: delivered \(HTTP 200, try 1\)$/.test(m)), messages.join('\n'));
  t.false(messages.some((m) => m.includes('s3cret')), 'the webhook query string (a secret) is not stored');
});

test.serial('a hanging hook is killed at its timeout and the failure is an event in history', async (t) => {
  const s = await killScenario();
  t.is(s.hang.record.event.event, 'killed');
  t.false(s.hang.pidAliveAfter, `the hanging hook (pid ${s.hang.record.pid}) was killed`);
  const timedOut = s.allAlertEvents.filter((e) => /timed out after 1(\.0)?s; process group killed/.test(e.message));
  t.is(timedOut.length, 1, s.allAlertEvents.map((e) => e.message).join('\n'));
  t.regex(timedOut[0]!.message, /^killed → command: .*: FAILED \(timed out after 1(\.0)?s; process group killed; giving up after 1 attempt, try 1\)$/);
  t.like(JSON.parse(timedOut[0]!.data_json!), { ok: false, attempt: 1, kind: 'killed' });
});

test.serial('each alert delivery is an event of its run in `show RUN --json`', async (t) => {
  const s = await killScenario();
  const alertEvents = s.leak.shown.events.filter((e: any) => e.kind === 'alert');
  t.true(alertEvents.some((e: any) => /^killed → webhook: .*delivered/.test(e.message)), JSON.stringify(alertEvents));
  t.true(alertEvents.some((e: any) => /^killed → command: .*delivered/.test(e.message)));
  t.true(alertEvents.some((e: any) => /timed out/.test(e.message)));
  t.true(alertEvents.some((e: any) => /^warning → command: .*delivered/.test(e.message)));
});

test.serial('warn_at: a leaker crossing 80% of its limit gets exactly one warning event (measured, limit) before the kill, and a warning alert', async (t) => {
  const s = await killScenario();
  const events = s.leak.shown.events;
  const warnings = events.filter((e: any) => e.kind === 'warning');
  t.is(warnings.length, 1, JSON.stringify(warnings));
  const warning = warnings[0];
  t.is(warning.limit_value, 150 * MiB);
  t.true(warning.measured >= 0.8 * 150 * MiB && warning.measured <= 150 * MiB, `measured ${warning.measured} between 80% and 100% of the limit`);
  t.like(JSON.parse(warning.data_json), { reason: 'memory' });
  t.regex(warning.message, /^memory at (8\d|9\d|100)% of its limit$/);
  const killIndex = events.findIndex((e: any) => e.kind === 'kill');
  t.true(events.indexOf(warning) < killIndex, 'the warning comes before the kill');
  const warningAlerts = s.hookLines.filter((l) => l.event.event === 'warning');
  t.is(warningAlerts.length, 1, 'one warning alert to the subscribed hook');
  t.like(warningAlerts[0].event, { job: 'leak', reason: 'memory', measured: warning.measured, limit: 150 * MiB });
  t.true(warningAlerts[0].received_at <= s.hookLines.find((l) => l.event.event === 'killed').received_at);
  t.false(s.webhookHits.some((h) => h.body?.event === 'warning'), 'the webhook is not subscribed to warnings');
});

test.serial('the killed run carries diagnostics: /proc status, smaps_rollup and the log tail', async (t) => {
  const s = await killScenario();
  const diagnostics = s.leak.shown.events.filter((e: any) => e.kind === 'diagnostics');
  t.is(diagnostics.length, 1);
  const text: string = diagnostics[0].message;
  const pid = s.leak.shown.run.pid;
  t.regex(text, /^kill: memory at /);
  t.true(text.includes(`=== /proc/${pid}/status`), text.slice(0, 400));
  t.regex(text, /^VmRSS:\s+\d+ kB$/m);
  t.true(text.includes(`=== /proc/${pid}/smaps_rollup`));
  t.regex(text, /^Rss:\s+\d+ kB$/m);
  t.regex(text, /=== last 20 lines of .*\.log/);
  t.true(text.includes(s.hostile.line), 'the log tail is in the diagnostics');
});

test.serial('children get a higher oom_score_adj than the daemon', async (t) => {
  const s = await killScenario();
  t.log(`daemon oom_score_adj ${s.daemonOomScoreAdj}, job ${s.steady.oomScoreAdj}`);
  t.true(s.steady.oomScoreAdj > s.daemonOomScoreAdj);
});

test.serial('/metrics: kills by reason, runs by state, live RSS of a running job, queue length', async (t) => {
  const s = await killScenario();
  const after = s.metricsAfterKill;
  t.regex(after, /^duckvisor_kills_total\{job="leak",reason="memory"\} 1$/m);
  t.regex(after, /^duckvisor_runs_total\{job="leak",state="killed",reason="memory"\} 1$/m);
  const rss = /^duckvisor_job_rss_bytes\{job="steady"\} (\d+)$/m.exec(after);
  t.truthy(rss, 'live RSS of the running job');
  t.true(Number(rss![1]) > 10 * MiB, `steady RSS ${rss![1]}`);
  t.notRegex(after, /^duckvisor_job_rss_bytes\{job="leak"\}/m, 'no gauge left for the dead run');
  t.regex(after, /^duckvisor_queue_length 0$/m);
  t.regex(after, /^duckvisor_alert_deliveries_total\{result="ok"\} \d+$/m);
  const withQueue = s.metricsWithQueue;
  t.regex(withQueue, /^duckvisor_live_runs 2$/m);
  t.regex(withQueue, /^duckvisor_job_rss_bytes\{job="blocker"\} \d+$/m);
  t.regex(withQueue, /^duckvisor_queue_length \d+$/m, 'the queue gauge is exported');
});

// A run waiting for a free slot must be counted by the queue gauge as soon as it is queued.
test.serial('/metrics: queue_length counts a run waiting for a free slot', async (t) => {
  const s = await killScenario();
  t.log(`with one run queued (duckvisorctl status: queued 1): ${/^duckvisor_queue_length.*$/m.exec(s.metricsWithQueue)?.[0]}`);
  t.regex(s.metricsWithQueue, /^duckvisor_queue_length 1$/m);
});

test.serial('shell metacharacters in a job env value, a progress unit and log lines reach hooks verbatim and run nothing', async (t) => {
  const s = await killScenario();
  t.deepEqual(readdirSync(s.markers), [], 'no marker file was created by any hook, job or the daemon');
  t.is(s.steady.env.DV_NOTE, s.hostile.env, 'the job env value arrives verbatim');
  const killed = s.hookLines.find((l) => l.event.event === 'killed');
  t.is(killed.event.last_progress.unit, s.hostile.unit);
  t.true(killed.event.log_tail.every((line: string) => line === s.hostile.line || !line.includes('touch')));
});

test.serial('a job name with shell metacharacters is refused by the config, naming the rule; nothing runs', async (t) => {
  const dir = tempDir();
  const marker = path.join(dir, 'pwned');
  const config = path.join(dir, 'duckvisor.yaml');
  writeFileSync(
    config,
    `state_dir: ./state
control:
  socket: ./run/dv.sock
jobs:
  "x$(touch ${marker})":
    command: [true]
`,
  );
  const daemon = spawnDaemonWithEnv(config, envWithoutSystemd());
  t.teardown(() => stopDaemon(daemon));
  const exit = await daemon.exited;
  t.is(exit.code, 78, daemon.output());
  t.regex(daemon.output(), /is not an accepted job name/);
  t.regex(daemon.output(), /letters, digits, '_', '\.', '-'/);
  t.regex(daemon.output(), new RegExp(`${config.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:5`), 'names the file and line');
  t.false(existsSync(marker));
});

// ------------------------------------------------------------------------------------------- reload

test.serial('an invalid config is refused by `duckvisorctl reload` and by SIGHUP; the old config stays (a new run still gets the old limit)', async (t) => {
  const dir = tempDir();
  const config = path.join(dir, 'duckvisor.yaml');
  const valid = `state_dir: ./state
control:
  socket: ./run/dv.sock
defaults:
  stop_grace: 2s
  retries: {max: 0}
jobs:
  leak:
    command: ${argv(node, fixture('ops-leaker.mjs'), '100')}
    heartbeat: stdout
    autostart: false
    limits: {rss: 150MiB}
`;
  writeFileSync(config, valid);
  const daemon = await startDaemonWithEnv(config, envWithoutSystemd());
  const pids: number[] = [];
  t.teardown(async () => {
    await stopDaemon(daemon);
    for (const pid of pids) killGroup(pid);
  });
  // The edit raises the limit, but also has a typo: the whole file must be refused.
  writeFileSync(config, valid.replace('rss: 150MiB', 'rss: 1GiB').replace('stop_grace: 2s', 'stop_grace: 2s\n  stall_timout: 5m'));

  const refused = await ctl(['--config', config, 'reload']);
  t.not(refused.code, 0);
  t.regex(refused.stderr + refused.stdout, /reload refused/);
  t.regex(refused.stderr + refused.stdout, /stall_timout/, 'the error names the bad key');

  daemon.child.kill('SIGHUP');
  await waitFor(() => /SIGHUP: reload refused/.test(daemon.output()), 10_000, `the SIGHUP refusal in the daemon log:\n${daemon.output()}`);
  t.is((await ctl(['--config', config, 'status', '--json'])).code, 0, 'the daemon is still up');

  const started = await startJob(config, 'leak');
  const shown = await waitForRunEnd(config, started.id);
  if (shown.run.pid) pids.push(shown.run.pid);
  t.like(shown.run, { state: 'killed', reason: 'memory' });
  const kill = shown.events.find((e: any) => e.kind === 'kill');
  t.is(kill.limit_value, 150 * MiB, 'killed at the old limit');
  t.true(kill.measured < 1024 * MiB);

  t.is((await ctl(['--config', config, 'shutdown'])).code, 0);
  t.is((await daemon.exited).code, 0);
  const db = new Database(path.join(dir, 'state', 'history.sqlite'), { readonly: true });
  t.teardown(() => db.close());
  const refusals = db.prepare("SELECT message FROM events WHERE kind = 'reload_refused'").all() as Array<{ message: string }>;
  t.is(refusals.length, 2, 'both refusals are in history');
  for (const r of refusals) t.regex(r.message, /stall_timout/);
  t.is((db.prepare("SELECT count(*) AS n FROM events WHERE kind = 'reload'").get() as { n: number }).n, 0, 'nothing was applied');
});

// ------------------------------------------------------------------------------------------- thrash

// The swap file is switched on when this file loads (as in run-swap.test.ts), so the decision between the
// test and a skip with its reason is made before tests are declared; after.always switches it off.
const swapFile = enableSwapFile('512M');

if ('skip' in swapFile) {
  console.log(`ops-e2e thrash: skipped: ${swapFile.skip}`);
  test.skip(`thrash: sustained major page faults kill a job with reason thrash (skipped: ${swapFile.skip})`, () => {});
} else {
  test.after.always(swapFile.off);
  test.serial('thrash: sustained major page faults (swap-ins) kill a job with reason thrash', async (t) => {
    const dir = tempDir();
    const config = path.join(dir, 'duckvisor.yaml');
    writeFileSync(
      config,
      `state_dir: ./state
control:
  socket: ./run/dv.sock
defaults:
  stop_grace: 2s
  retries: {max: 0}
jobs:
  thrasher:
    command: ${argv('python3', fixture('thrasher.py'), '64')}
    heartbeat: stdout
    autostart: true
    limits: {rss: none, swap: none, majflt_rate: 200}
    thrash_window: 2s
`,
    );
    const daemon = await startDaemonWithEnv(config, envWithoutSystemd());
    const pids: number[] = [];
    t.teardown(async () => {
      await stopDaemon(daemon);
      for (const pid of pids) killGroup(pid);
    });
    const run = await waitForJobState(config, 'thrasher', ['running', 'killed', 'failed']);
    pids.push(run.pid);
    const shown = await waitForRunEnd(config, run.id, 60_000);
    t.like(shown.run, { state: 'killed', reason: 'thrash' }, JSON.stringify(shown.run));
    const kill = shown.events.find((e: any) => e.kind === 'kill');
    t.is(kill.limit_value, 200);
    t.true(kill.measured > 200, `sustained fault rate ${kill.measured}/s`);
    t.regex(kill.message, /major page faults stayed above 200\/s for 2(\.0)?s/);
    t.log(`thrash kill: ${kill.message}`);
    t.is((await ctl(['--config', config, 'shutdown'])).code, 0);
    await daemon.exited;
  });
}
