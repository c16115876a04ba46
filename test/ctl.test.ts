import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { ctl, ctlJson, fixture, killQuietly, startDaemon, waitFor, writeConfig } from './helpers/duckvisord.js';

const requiredRunFields = ['id', 'job', 'attempt', 'state', 'reason', 'exit_code', 'signal', 'started_at', 'ended_at', 'peak_rss_bytes', 'peak_swap_bytes', 'progress_done', 'progress_total', 'rows_written'];
const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

test('duckvisorctl drives a real daemon: status, start, stop, history, show, tail, follow, reload, shutdown', async (t) => {
  const sleeper = JSON.stringify(fixture('sleeper.mjs'));
  const paths = writeConfig(
    `  long:
    command: [node, ${sleeper}, "60", "300"]
    heartbeat: stdout
    autostart: false
    limits: {rss: 1GiB}
  quick:
    command: [node, ${sleeper}, "0.5", "5"]
    heartbeat: stdout
    autostart: false
`,
    'defaults:\n  stop_grace: 2s\n  sample_interval: 100ms\n',
  );
  const daemon = await startDaemon(paths.config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const cfg = paths.config;

  const status = await ctlJson(cfg, 'status');
  t.is(status.daemon.pid, daemon.child.pid);
  t.deepEqual(status.jobs.map((j: any) => j.job), ['long', 'quick']);
  t.is(status.jobs[0].run, null);

  // start → running with progress from [HEARTBEAT] lines
  const { run: started } = await ctlJson(cfg, 'start', 'long');
  t.is(started.state, 'queued');
  const live = await waitFor(async () => {
    const s = await ctlJson(cfg, 'status');
    const job = s.jobs.find((j: any) => j.job === 'long');
    return job.run?.state === 'running' && job.run.progress_done >= 3 && job.rate !== null ? job : null;
  }, 20_000, 'long to run with progress');
  t.is(live.run.id, started.id);
  t.is(live.run.progress_total, 300);
  t.is(live.rss_limit_bytes, 1024 ** 3);
  t.true(live.rss_bytes > 0);
  const human = await ctl(['--config', cfg, 'status']);
  t.regex(human.stdout, /^JOB\s+STATE\s+RUN\s+PROGRESS\s+RATE\s+ETA\s+RSS\/LIMIT\s+UPTIME/m);
  t.regex(human.stdout, /long\s+running\s+\S+\s+\d+\/300 items \(\d+\.\d%\)\s+[\d.]+\/s\s+\S+\s+[\d.]+ MiB\/1\.0 GiB/);

  // starting it again is refused
  const again = await ctl(['--config', cfg, 'start', 'long']);
  t.is(again.code, 1);
  t.regex(again.stderr, /already running as run/);

  // stop → killed, reason operator, and the run's record says so
  const stopped = await ctlJson(cfg, 'stop', 'long');
  t.is(stopped.runs[0].id, started.id);
  t.is(stopped.runs[0].state, 'killed');
  t.is(stopped.runs[0].reason, 'operator');

  const shown = await ctlJson(cfg, 'show', started.id);
  for (const field of requiredRunFields) t.true(field in shown, `show --json has ${field}`);
  t.regex(shown.started_at, iso);
  t.regex(shown.ended_at, iso);
  t.true(shown.peak_rss_bytes > 0);
  t.true(shown.samples.length > 0);
  t.true(shown.events.some((e: any) => e.kind === 'kill' && /operator/.test(e.message)));
  t.true(shown.events.some((e: any) => e.kind === 'state' && /^running/.test(e.message)));
  const showHuman = await ctl(['--config', cfg, 'show', started.id]);
  t.regex(showHuman.stdout, /state:\s+killed \(operator\)/);
  t.regex(showHuman.stdout, /RSS over time/);

  const tail = await ctl(['--config', cfg, 'tail', started.id]);
  t.is(tail.code, 0);
  t.regex(tail.stdout, /sleeper pid \d+ starting/);
  t.regex(tail.stdout, /\[HEARTBEAT\] 1\/300/);

  // start --follow shows the run's progress until it ends, and exits 0 on success
  const followed = await ctl(['--config', cfg, 'start', 'quick', '--follow']);
  t.is(followed.code, 0, followed.stderr);
  t.regex(followed.stdout, /^quick: run \S+$/m);
  t.regex(followed.stdout, /^quick \S+  succeeded  \S+ 100\.0% 5\/5 items/m);

  const history = await ctlJson(cfg, 'history');
  t.true(history.length >= 2);
  const times = history.map((r: any) => Date.parse(r.queued_at));
  t.deepEqual(times, [...times].sort((a, b) => b - a), 'newest first');
  for (const field of requiredRunFields) t.true(field in history[0], `history --json has ${field}`);
  t.deepEqual((await ctlJson(cfg, 'history', 'long')).map((r: any) => r.id), [started.id]);
  t.deepEqual((await ctlJson(cfg, 'history', '--reason', 'operator')).map((r: any) => r.id), [started.id]);
  t.is((await ctlJson(cfg, 'history', '--limit', '1')).length, 1);

  // errors: unknown job (404 naming the known jobs), unknown run, bad usage
  const unknown = await ctl(['--config', cfg, 'start', 'nope']);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /unknown job 'nope'; known jobs: long, quick/);
  t.regex((await ctl(['--config', cfg, 'show', 'no-such-run'])).stderr, /no run with id 'no-such-run'/);
  const usage = await ctl(['--config', cfg, 'frobnicate']);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /unknown verb 'frobnicate'[\s\S]*verbs:[\s\S]*status[\s\S]*shutdown/);
  t.is((await ctl(['--config', cfg, 'history', '--limit', 'zero'])).code, 2);

  // reload: a valid change is reported; an invalid file is refused and the old config stays
  const original = readFileSync(cfg, 'utf8');
  writeFileSync(cfg, original.replace('concurrency: 3', 'concurrency: 2'));
  const reloaded = await ctlJson(cfg, 'reload');
  t.true(reloaded.changes.length >= 1);
  t.true(reloaded.changes.some((line: string) => /concurrency/.test(line)), reloaded.changes.join('\n'));
  t.is((await ctlJson(cfg, 'status')).daemon.concurrency, 2);
  writeFileSync(cfg, original.replace('concurrency: 3', 'concurrency: lots'));
  const refused = await ctl(['--config', cfg, 'reload']); // the socket is still found in a file that is invalid elsewhere
  t.is(refused.code, 1);
  t.regex(refused.stderr, /reload refused[\s\S]*concurrency/);
  t.is((await ctl(['--socket', paths.socket, '--json', 'status'])).code, 0);
  t.is(JSON.parse((await ctl(['--socket', paths.socket, '--json', 'status'])).stdout).daemon.concurrency, 2);
  writeFileSync(cfg, original);

  // shutdown: the daemon exits 0 and the CLI then says it is not running
  const bye = await ctlJson(cfg, 'shutdown');
  t.true(bye.ok);
  t.is((await daemon.exited).code, 0);
  const gone = await ctl(['--config', cfg, 'status']);
  t.is(gone.code, 3);
  t.is(gone.stderr.trim(), `duckvisorctl: duckvisord is not running (no socket at ${paths.socket})`);
});
