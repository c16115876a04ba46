// `duckvisorctl top` in a real terminal (tmux): it shows the jobs of a real daemon on the alternate screen,
// follows a resize, and quits cleanly on q and on Ctrl-C; without a TTY it prints plain snapshots.
// `duckvisorctl start JOB --follow` watches a real run to its end and exits with its outcome.
import test from 'ava';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { bar, renderTop } from '../supervisor/top.js';
import { ctl, ctlBin, fixture, killQuietly, startDaemon, waitFor, writeConfig, type DaemonProcess } from './helpers/duckvisord.js';
import { socketStatus } from './helpers/web-server.js';

const run = promisify(execFile);
const topCommand = (socket: string) => `${JSON.stringify(process.execPath)} ${JSON.stringify(ctlBin)} --socket ${JSON.stringify(socket)} top`;

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
  // The exit status is printed by the pane's shell, as in the q test: tmux 3.3a sometimes marks the pane
  // dead (its pty closed) without ever recording the status of a process that did exit.
  await session.call('new-session', '-d', '-x', '120', '-y', '30', '-s', 'top', `${topCommand(socket)}; echo "top exited with $?"; sleep 60`);
  await waitFor(async () => /walker/.test(await session.capture()), 20_000, 'top to draw');
  await session.call('send-keys', '-t', 'top', 'C-c');
  const after = await waitFor(async () => {
    const text = await session.capture();
    return /top exited with \d+/.test(text) ? text : null;
  }, 10_000, 'top to exit on Ctrl-C');
  t.regex(after, /top exited with 0/);
  t.is(await session.format('#{alternate_on}'), '0');
});

/**
 * Runs `duckvisorctl top` with pipes (no TTY) until `enough(stdout)` holds, then sends SIGTERM, which
 * top treats like q; resolves with what it printed and how it exited.
 */
function topWithoutTty(socket: string, extra: string[], enough: (stdout: string) => boolean): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ctlBin, '--socket', socket, ...extra, 'top'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let asked = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`top printed too little in 30 s:\n${stdout}\n${stderr}`));
    }, 30_000);
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (!asked && enough(stdout)) {
        asked = true;
        child.kill('SIGTERM');
      }
    });
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
  });
}

test('without a TTY, top prints plain snapshots (no escape codes) or JSON lines, and ends cleanly on SIGTERM', async (t) => {
  const { daemon, socket } = await daemonWithJobs();
  t.teardown(() => killQuietly(daemon.child.pid));
  const snapshots = (text: string) => text.match(/^duckvisord pid \d+/gm)?.length ?? 0;
  const plain = await topWithoutTty(socket, [], (text) => snapshots(text) >= 2 && text.endsWith('\n\n'));
  t.is(plain.code, 0, plain.stderr);
  t.false(plain.stdout.includes('\x1b'), 'no ANSI codes');
  t.true(snapshots(plain.stdout) >= 2, 'one snapshot per interval');
  t.regex(plain.stdout, /^JOB\s+STATE\s+PROGRESS\s+RATE\s+ETA\s+RSS\/LIMIT\s+SWAP/m);
  t.regex(plain.stdout, /^walker\s+running\s+/m);
  t.regex(plain.stdout, /^idle-job\s+never run/m);
  const json = await topWithoutTty(socket, ['--json'], (text) => text.split('\n').length > 2);
  t.is(json.code, 0, json.stderr);
  const lines = json.stdout.trim().split('\n').map((line) => JSON.parse(line) as { jobs: Array<{ job: string }> });
  t.true(lines.length >= 2);
  t.deepEqual(lines[0]!.jobs.map((job) => job.job), ['idle-job', 'walker']);
});

test('top refuses arguments, and keeps saying the daemon is not running until it is stopped (exit 3)', async (t) => {
  const extra = await ctl(['--socket', '/nonexistent/dv.sock', 'top', 'walker']);
  t.is(extra.code, 2);
  t.regex(extra.stderr, /top takes no arguments/);
  const absent = await topWithoutTty('/nonexistent/dv.sock', [], (text) => /not running/.test(text));
  t.is(absent.code, 3, absent.stderr);
  t.regex(absent.stdout, /waiting for the daemon/);
  t.regex(absent.stdout, /! cannot read the daemon's status: duckvisord is not running \(no socket at \/nonexistent\/dv\.sock\)/);
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

test('start JOB --follow prints plain progress lines without a TTY and exits 0 on success, 1 on a memory kill', async (t) => {
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
    retries: { max: 0 }
`);
  const daemon = await startDaemon(config);
  t.teardown(() => killQuietly(daemon.child.pid));

  const quick = await ctl(['--socket', socket, 'start', 'quick', '--follow']);
  t.is(quick.code, 0, quick.stderr);
  t.false(quick.stdout.includes('\x1b'), 'no ANSI codes without a TTY');
  const quickId = /^quick: run (\S+)$/m.exec(quick.stdout)?.[1];
  t.truthy(quickId, quick.stdout);
  const lines = quick.stdout.trim().split('\n');
  t.true(lines.slice(1).every((line) => line.startsWith(`quick ${quickId}  `)), quick.stdout);
  t.regex(lines.at(-1)!, new RegExp(`^quick ${quickId}  succeeded  █+ 100\\.0% 30/30 items  peak RSS \\S+ \\S+  took `));

  const doomed = await ctl(['--socket', socket, 'start', 'doomed', '--follow']);
  t.is(doomed.code, 1, doomed.stderr);
  t.regex(doomed.stdout, /^doomed \S+  killed \(memory\)  peak RSS /m);
  t.regex(doomed.stdout, /exceeds the limit of 120\.0 MiB/);

  // --json: only the final run, as one JSON document.
  const json = await ctl(['--socket', socket, '--json', 'start', 'quick', '--follow']);
  t.is(json.code, 0, json.stderr);
  const final = JSON.parse(json.stdout) as { run: { state: string; progress_done: number; progress_total: number } };
  t.is(final.run.state, 'succeeded');
  t.is(final.run.progress_done, 30);
  t.is(final.run.progress_total, 30);
});
