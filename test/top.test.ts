// `top` in a real terminal (tmux): it shows the jobs of a real daemon on the alternate screen, follows a
// resize, and quits cleanly on q and on Ctrl-C; without a TTY it prints plain snapshots. `--follow`
// (followRun) watches a real run to its end.
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { followRun } from '../supervisor/follow.js';
import type { RunView } from '../supervisor/history.js';
import { bar, renderTop } from '../supervisor/top.js';
import { fixture, killQuietly, startDaemon, waitFor, writeConfig, type DaemonProcess } from './helpers/duckvisord.js';
import { httpRequest, socketStatus } from './helpers/web-server.js';

const run = promisify(execFile);
const driver = fixture('top-driver.mjs');
// Until duckvisorctl dispatches `top`, the driver runs the same runTop against the socket.
const topCommand = (socket: string, extra = '') => `${JSON.stringify(process.execPath)} ${JSON.stringify(driver)} --socket ${JSON.stringify(socket)} --interval 300 ${extra}`;

let tmuxAvailable = true;
try {
  execFileSync('tmux', ['-V']);
} catch {
  tmuxAvailable = false;
}

interface Daemon {
  daemon: DaemonProcess;
  socket: string;
}

async function daemonWithJobs(): Promise<Daemon> {
  const { config, socket } = writeConfig(`  walker:
    command: [python3, ${JSON.stringify(fixture('progress.py'))}, "2000"]
    heartbeat: stdout
    autostart: true
    limits: { rss: 256MiB }
  idle-job:
    command: [node, ${JSON.stringify(fixture('sleeper.mjs'))}, forever]
    heartbeat: none
    autostart: false
`);
  const daemon = await startDaemon(config);
  await waitFor(async () => (await socketStatus(socket)).jobs.find((job) => job.job === 'walker')?.run?.state === 'running', 20_000, 'walker running');
  return { daemon, socket };
}

/** A private tmux server for one test. */
function tmux(name: string) {
  const call = async (...args: string[]) => (await run('tmux', ['-L', name, '-f', '/dev/null', ...args])).stdout;
  return {
    call,
    capture: () => call('capture-pane', '-p', '-t', 'top'),
    format: async (format: string) => (await call('display-message', '-p', '-t', 'top', format)).trim(),
    kill: () => call('kill-server').catch(() => ''),
  };
}

const tmuxTest = tmuxAvailable ? test : test.skip;
if (!tmuxAvailable) console.log('top.test: tmux is not installed; the terminal tests are skipped (apt-get install tmux)');

tmuxTest('top shows the jobs on the alternate screen, follows a resize and quits on q', async (t) => {
  const { daemon, socket } = await daemonWithJobs();
  t.teardown(() => killQuietly(daemon.child.pid));
  const session = tmux(`dv-top-${process.pid}-q`);
  t.teardown(() => session.kill());
  // A shell runs top and then reports its exit status and stays, so the restored terminal can be inspected.
  await session.call('new-session', '-d', '-x', '160', '-y', '40', '-s', 'top', `${topCommand(socket)}; echo "top exited with $?"; sleep 60`);
  const screen = await waitFor(async () => {
    const text = await session.capture();
    return /walker\s+running/.test(text) && /idle-job\s+never run/.test(text) ? text : null;
  }, 20_000, 'top to show both jobs');
  t.regex(screen, /JOB\s+STATE\s+PROGRESS\s+RATE\s+ETA\s+RSS\/LIMIT/);
  t.regex(screen, /duckvisord pid \d+/);
  t.regex(screen, /walker\s+running\s+[█▏▎▍▌▋▊▉·]+\s+\d+\.\d% \d+\/2000/);
  t.is(await session.format('#{alternate_on}'), '1', 'drawn on the alternate screen');
  t.is(await session.format('#{cursor_flag}'), '0', 'cursor hidden');
  // The progress advances on screen without any key being pressed.
  const done = (text: string) => Number(/(\d+)\/2000/.exec(text)?.[1] ?? -1);
  const before = done(screen);
  await waitFor(async () => done(await session.capture()) > before, 20_000, 'progress to advance on screen');
  // A narrower terminal: every line fits.
  await session.call('resize-window', '-t', 'top', '-x', '90', '-y', '30');
  const narrow = await waitFor(async () => {
    const text = await session.capture();
    const lines = text.split('\n');
    return lines.every((line) => [...line].length <= 90) && /walker/.test(text) ? text : null;
  }, 10_000, 'top to redraw at 90 columns');
  t.regex(narrow, /walker/);
  await session.call('send-keys', '-t', 'top', 'q');
  const after = await waitFor(async () => {
    const text = await session.capture();
    return /top exited with \d+/.test(text) ? text : null;
  }, 10_000, 'top to exit on q');
  t.regex(after, /top exited with 0/);
  t.false(/JOB\s+STATE/.test(after), 'the table went away with the alternate screen');
  t.is(await session.format('#{alternate_on}'), '0', 'left the alternate screen');
  t.is(await session.format('#{cursor_flag}'), '1', 'cursor shown again');
});

tmuxTest('top quits cleanly on Ctrl-C', async (t) => {
  const { daemon, socket } = await daemonWithJobs();
  t.teardown(() => killQuietly(daemon.child.pid));
  const session = tmux(`dv-top-${process.pid}-c`);
  t.teardown(() => session.kill());
  await session.call('new-session', '-d', '-x', '120', '-y', '30', '-s', 'top', topCommand(socket));
  await session.call('set-option', '-t', 'top', 'remain-on-exit', 'on');
  await waitFor(async () => /walker/.test(await session.capture()), 20_000, 'top to draw');
  await session.call('send-keys', '-t', 'top', 'C-c');
  await waitFor(async () => (await session.format('#{pane_dead}')) === '1', 10_000, 'top to exit on Ctrl-C');
  t.is(await session.format('#{pane_dead_status}'), '0');
  t.is(await session.format('#{alternate_on}'), '0');
});

test('without a TTY, top prints plain snapshots (no escape codes) or JSON lines', async (t) => {
  const { daemon, socket } = await daemonWithJobs();
  t.teardown(() => killQuietly(daemon.child.pid));
  const plain = await run(process.execPath, [driver, '--socket', socket, '--iterations', '2', '--interval', '200']);
  t.false(plain.stdout.includes('\x1b'), 'no ANSI codes');
  t.is(plain.stdout.match(/^duckvisord pid \d+/gm)?.length, 2, 'two snapshots');
  t.regex(plain.stdout, /^walker\s+running\s+/m);
  t.regex(plain.stdout, /^idle-job\s+never run/m);
  const json = await run(process.execPath, [driver, '--socket', socket, '--iterations', '2', '--interval', '200', '--json']);
  const lines = json.stdout.trim().split('\n').map((line) => JSON.parse(line) as { jobs: Array<{ job: string }> });
  t.is(lines.length, 2);
  t.deepEqual(lines[0]!.jobs.map((job) => job.job), ['idle-job', 'walker']);
});

test('renderTop fits the width and reports an unreachable daemon', (t) => {
  const lines = renderTop(null, 'cannot read the daemon\'s status: connect ENOENT', 60, 10, Date.now(), false);
  t.regex(lines.join('\n'), /waiting for the daemon/);
  t.regex(lines.join('\n'), /! cannot read the daemon's status/);
  t.true(lines.every((line) => [...line].length <= 60));
  t.is(bar(0.5, 10), '█████·····');
  t.is(bar(1.2, 4), '████');
  t.is(bar(0, 3), '···');
});

test('followRun draws a run to its end and returns 0 for success, 1 for a kill', async (t) => {
  const { config, socket } = writeConfig(`  quick:
    command: [python3, ${JSON.stringify(fixture('progress.py'))}, "30"]
    heartbeat: stdout
    autostart: false
  doomed:
    command: [node, ${JSON.stringify(fixture('leaker.mjs'))}, "80"]
    heartbeat: none
    autostart: false
    sample_interval: 100ms
    limits: { rss: 120MiB }
`);
  const daemon = await startDaemon(config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const source = {
    status: () => socketStatus(socket),
    run: async (id: string) => (JSON.parse((await httpRequest({ socketPath: socket }, 'GET', `/v1/runs/${id}`)).body) as { run: RunView }).run,
  };
  const start = async (job: string) => (JSON.parse((await httpRequest({ socketPath: socket }, 'POST', `/v1/jobs/${job}/start`)).body) as { run: RunView }).run.id;

  const quickOut = new PassThrough();
  let quickText = '';
  quickOut.on('data', (chunk) => (quickText += chunk));
  const quickId = await start('quick');
  t.is(await followRun(quickId, source, { out: quickOut, intervalMs: 100, plainEveryMs: 200 }), 0);
  t.regex(quickText, new RegExp(`^quick ${quickId}  succeeded  [█]+ 100\\.0% 30/30`, 'm'));
  t.false(quickText.includes('\x1b'));

  const doomedOut = new PassThrough();
  let doomedText = '';
  doomedOut.on('data', (chunk) => (doomedText += chunk));
  const doomedId = await start('doomed');
  t.is(await followRun(doomedId, source, { out: doomedOut, intervalMs: 100 }), 1);
  t.regex(doomedText, /killed \(memory\)/);
  t.regex(doomedText, /exceeds the limit of 120\.0 MiB/);
});
