// Soak test of the daemon: a real duckvisord runs ~10 short jobs again and again (cron every second, plus
// `duckvisorctl start` from here) with concurrency 4 for --minutes N (default 30; --quick = 1 minute).
// Every 10 s it records the daemon's RSS, open fds, zombie children, runs done and orphans; at the end it
// drains the daemon to idle (reload without schedules), compares idle-to-idle, and exits non-zero when fds
// grew by more than 20, a zombie child is left, or a process of a finished run is still alive.
//
//   npm run build && node dist/bench/soak.js --minutes 30     (results: bench/results/soak.md + .json)
//   npm run build && node dist/bench/soak.js --quick          (CI: 1 minute, results in bench/work/)
//   ... --quick --with-escaper   adds a job whose setsid grandchild outlives it unseen (shows the orphan check fail)
import Database from 'better-sqlite3';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../supervisor/paths.js';
import { formatBytes } from '../supervisor/units.js';
import { assembleResults } from './assemble-results.js';
import { FLAT_RSS_MEANING, isFlatRss } from './flat-rss.js';
import { machineLine } from './machine.js';

const MiB = 1024 * 1024;
const SAMPLE_EVERY_MS = 10_000;
const MANUAL_START_EVERY_MS = 2_000;
const CONCURRENCY = 4;
const FD_GROWTH_ALLOWED = 20;
/** history.keep_runs of the soak's daemon: small, so retention prunes during the soak as it would in months. */
const KEEP_RUNS = 200;
/** A process of a run that ended this long ago and is still alive is an orphan (not a sweep in progress). */
const ORPHAN_GRACE_MS = 5_000;
const FULL_COMMAND = 'npm run build && node dist/bench/soak.js --minutes 30';
const QUICK_COMMAND = 'npm run build && node dist/bench/soak.js --quick';

const daemonBin = path.join(projectRoot, 'bin', 'duckvisord.js');
const ctlBin = path.join(projectRoot, 'bin', 'duckvisorctl.js');
const jobScript = path.join(projectRoot, 'bench', 'workloads', 'soak-job.sh');
const leakerScript = path.join(projectRoot, 'bench', 'workloads', 'soak-leaker.mjs');

interface Options {
  minutes: number;
  quick: boolean;
  /** Keep going past `minutes` until this many runs ended (full mode: 1000). */
  minRuns: number;
  /** Add a job whose setsid grandchild is left behind before the first sample (a known escape route). */
  withEscaper: boolean;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { minutes: 30, quick: false, minRuns: 1000, withEscaper: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--quick') {
      options.quick = true;
    } else if (arg === '--with-escaper') {
      options.withEscaper = true;
    } else if (arg === '--minutes') {
      const value = Number(argv[++i]);
      if (!Number.isFinite(value) || value <= 0) throw new Error(`--minutes needs a positive number, got '${argv[i] ?? ''}'`);
      options.minutes = value;
    } else {
      throw new Error(`unknown argument '${arg}'; usage: soak.js [--minutes N | --quick] [--with-escaper]`);
    }
  }
  if (options.quick) {
    options.minutes = 1;
    options.minRuns = 0;
  }
  return options;
}

// ------------------------------------------------------------------ the jobs

interface SoakJob {
  name: string;
  command: string[];
  /** What a correct daemon ends every run of this job with. */
  expected: string;
  extra?: Record<string, string>;
  /** Started by the harness through `duckvisorctl start` instead of cron. */
  manual?: boolean;
}

function soakJobs(withEscaper: boolean): SoakJob[] {
  const bash = (...args: string[]) => ['bash', jobScript, ...args];
  const leaker = (rate: string) => [process.execPath, leakerScript, rate];
  return [
    { name: 'ok-50ms', command: bash('ok', '50'), expected: 'succeeded' },
    { name: 'ok-120ms', command: bash('ok', '120'), expected: 'succeeded' },
    { name: 'ok-200ms', command: bash('ok', '200'), expected: 'succeeded' },
    { name: 'ok-300ms', command: bash('ok', '300'), expected: 'succeeded' },
    { name: 'fail-exit3', command: bash('fail', '100', '3'), expected: 'failed/crash' },
    { name: 'fail-retried', command: bash('fail', '150', '1'), expected: 'failed/crash', extra: { retries: '{max: 1, backoff: 1s, factor: 1, jitter: 0, on: [crash]}' } },
    { name: 'leak-150MBps', command: leaker('150'), expected: 'killed/memory', extra: { limits: '{rss: 96MiB}' } },
    { name: 'leak-300MBps', command: leaker('300'), expected: 'killed/memory', extra: { limits: '{rss: 128MiB}' } },
    { name: 'hang', command: bash('hang'), expected: 'killed/stalled', extra: { stall_timeout: '1s' } },
    { name: 'family', command: bash('family', '600'), expected: 'succeeded' },
    { name: 'manual-ok', command: bash('ok', '100'), expected: 'succeeded', manual: true },
    // Leaves a setsid'd grandchild and exits within milliseconds, before the sampler has seen the grandchild.
    ...(withEscaper ? [{ name: 'escaper', command: ['bash', '-c', 'setsid sleep 300 </dev/null >/dev/null 2>&1 & echo "[HEARTBEAT] 1/1"'], expected: 'succeeded' }] : []),
  ];
}

function configYaml(jobs: SoakJob[], httpPort: number, scheduled: boolean): string {
  const lines = [
    '# Written by bench/soak.ts.',
    'state_dir: ./state',
    'warehouse: ./warehouse/warehouse.duckdb',
    `concurrency: ${CONCURRENCY}`,
    'control:',
    '  socket: ./run/duckvisor.sock',
    `  http: 127.0.0.1:${httpPort}`,
    `history: {keep_runs: ${KEEP_RUNS}}`,
    'defaults:',
    '  heartbeat_timeout: 30s',
    '  stall_timeout: 30s',
    '  stop_grace: 1s',
    '  sample_interval: 250ms',
    '  retries: {max: 0}',
    'alerts:',
    '  - on: [killed]',
    `    command: [/bin/sh, -c, 'cat > /dev/null']`,
    '    timeout: 5s',
    'jobs:',
  ];
  for (const job of jobs) {
    lines.push(`  ${job.name}:`);
    lines.push(`    command: [${job.command.map((arg) => JSON.stringify(arg)).join(', ')}]`);
    lines.push('    heartbeat: stdout');
    lines.push('    autostart: false');
    if (scheduled && !job.manual) lines.push(`    schedule: '* * * * * *'`);
    for (const [key, value] of Object.entries(job.extra ?? {})) lines.push(`    ${key}: ${value}`);
  }
  return lines.join('\n') + '\n';
}

// ------------------------------------------------------------------ /proc readings

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function statusField(pid: number, name: string): number {
  const status = readText(`/proc/${pid}/status`) ?? '';
  return Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
}

function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** Fields after the "(comm)" of /proc/<pid>/stat: [state, ppid, ...]. */
function statFields(pid: number | string): string[] | null {
  const text = readText(`/proc/${pid}/stat`);
  if (!text) return null;
  return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
}

/** User + system CPU seconds of a process. */
function cpuSeconds(pid: number): number {
  const fields = statFields(pid);
  if (!fields) return 0;
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function numericPids(): string[] {
  return readdirSync('/proc').filter((name) => /^\d+$/.test(name));
}

/** Zombie children of `parent`: pids whose state is Z and ppid is the daemon. */
function zombieChildren(parent: number): number[] {
  const zombies: number[] = [];
  for (const pid of numericPids()) {
    const fields = statFields(pid);
    if (fields && fields[0] === 'Z' && Number(fields[1]) === parent) zombies.push(Number(pid));
  }
  return zombies;
}

/** Zombies seen now and still zombies 1 s later (a child the daemon is about to reap is not a leak). */
async function persistentZombies(parent: number): Promise<{ seen: number; persistent: number[] }> {
  const first = zombieChildren(parent);
  if (first.length === 0) return { seen: 0, persistent: [] };
  await sleep(1000);
  const second = new Set(zombieChildren(parent));
  return { seen: first.length, persistent: first.filter((pid) => second.has(pid)) };
}

interface RunProcess {
  pid: number;
  runId: string;
  args: string;
}

/** Processes started by this soak's daemon for a run: their environ names our state dir and a run id. */
function runProcesses(stateDir: string): RunProcess[] {
  const found: RunProcess[] = [];
  for (const pid of numericPids()) {
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue;
    }
    const vars = environ.split('\0');
    if (!vars.includes(`DUCKVISOR_STATE_DIR=${stateDir}`)) continue;
    const runId = vars.find((entry) => entry.startsWith('DUCKVISOR_RUN_ID='))?.slice('DUCKVISOR_RUN_ID='.length);
    if (!runId) continue;
    const args = (readText(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' ');
    found.push({ pid: Number(pid), runId, args });
  }
  return found;
}

// ------------------------------------------------------------------ daemon and ctl

interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

function ctl(socket: string, ...args: string[]): Promise<CtlResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [ctlBin, '--socket', socket, ...args], { maxBuffer: 512 * MiB, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ctlJson<T>(socket: string, ...args: string[]): Promise<T> {
  const result = await ctl(socket, '--json', ...args);
  if (result.code !== 0) throw new Error(`duckvisorctl ${args.join(' ')} exited ${result.code}: ${result.stderr}${result.stdout}`);
  return JSON.parse(result.stdout) as T;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

interface StatusJson {
  daemon: { pid: number; live: number; queued: number };
}

interface RunJson {
  id: string;
  job: string;
  state: string;
  reason: string | null;
  detail: string | null;
}

// ------------------------------------------------------------------ the record

interface Point {
  /** Seconds since the load began. */
  t: number;
  phase: 'idle-start' | 'load' | 'idle-end';
  rssKiB: number;
  hwmKiB: number;
  fds: number;
  threads: number;
  zombiesSeen: number;
  zombiesPersistent: number;
  runsDone: number;
  live: number;
  queued: number;
  /** Processes of runs that ended more than ORPHAN_GRACE_MS ago, still alive. */
  orphans: number;
  cpuSeconds: number;
  historyBytes: number;
  metricsOk: boolean;
  /** V8 heap used / allocated by the daemon (its own /metrics); -1 when the scrape failed. */
  heapUsedKiB: number;
  heapTotalKiB: number;
}

function historyBytes(stateDir: string): number {
  let total = 0;
  for (const suffix of ['', '-wal', '-shm']) {
    const file = path.join(stateDir, `history.sqlite${suffix}`);
    if (existsSync(file)) total += statSync(file).size;
  }
  return total;
}

interface Scrape {
  ok: boolean;
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** Sum of duckvisor_runs_total: every run the daemon ended (history may have pruned some since). */
  runsEnded: number;
}

/** Scrapes the daemon's /metrics: that it answers, its V8 heap, and the runs it ended. */
async function scrapeMetrics(port: number): Promise<Scrape> {
  const failed: Scrape = { ok: false, heapUsedBytes: -1, heapTotalBytes: -1, runsEnded: -1 };
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
    const text = await response.text();
    if (!response.ok || !text.includes('runs_total')) return failed;
    const value = (name: string) => {
      const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      return match ? Number(match[1]) : -1;
    };
    let runsEnded = 0;
    for (const match of text.matchAll(/^duckvisor_runs_total\{[^}]*\} (\S+)$/gm)) runsEnded += Number(match[1]);
    return { ok: true, heapUsedBytes: value('duckvisor_daemon_nodejs_heap_size_used_bytes'), heapTotalBytes: value('duckvisor_daemon_nodejs_heap_size_total_bytes'), runsEnded };
  } catch {
    return failed;
  }
}

const terminal = "('succeeded', 'failed', 'killed', 'interrupted', 'skipped')";

/** Orphans: run processes whose run ended (in history) more than the grace period ago. */
function findOrphans(db: Database.Database, stateDir: string, now: number): RunProcess[] {
  const processes = runProcesses(stateDir);
  if (processes.length === 0) return [];
  const ended = db.prepare(`SELECT ended_at FROM runs WHERE id = ? AND state IN ${terminal}`);
  return processes.filter((proc) => {
    const row = ended.get(proc.runId) as { ended_at: number | null } | undefined;
    return row !== undefined && (row.ended_at ?? 0) < now - ORPHAN_GRACE_MS;
  });
}

async function takePoint(phase: Point['phase'], t0: number, daemonPid: number, socket: string, port: number, db: Database.Database, stateDir: string): Promise<Point> {
  const now = Date.now();
  const status = await ctlJson<StatusJson>(socket, 'status').catch(() => null);
  const stored = (db.prepare(`SELECT count(*) AS n FROM runs WHERE state IN ${terminal}`).get() as { n: number }).n;
  const scrape = await scrapeMetrics(port);
  // history.keep_runs prunes old runs, so the daemon's own counter is the count of runs ended.
  const runsDone = Math.max(stored, scrape.runsEnded);
  const zombies = await persistentZombies(daemonPid);
  return {
    t: Math.round((now - t0) / 1000),
    phase,
    rssKiB: statusField(daemonPid, 'VmRSS'),
    hwmKiB: statusField(daemonPid, 'VmHWM'),
    fds: openFds(daemonPid),
    threads: statusField(daemonPid, 'Threads'),
    zombiesSeen: zombies.seen,
    zombiesPersistent: zombies.persistent.length,
    runsDone,
    live: status?.daemon.live ?? -1,
    queued: status?.daemon.queued ?? -1,
    orphans: findOrphans(db, stateDir, now).length,
    cpuSeconds: cpuSeconds(daemonPid),
    historyBytes: historyBytes(stateDir),
    metricsOk: scrape.ok,
    heapUsedKiB: scrape.heapUsedBytes < 0 ? -1 : Math.round(scrape.heapUsedBytes / 1024),
    heapTotalKiB: scrape.heapTotalBytes < 0 ? -1 : Math.round(scrape.heapTotalBytes / 1024),
  };
}

function describePoint(point: Point): string {
  return `[${String(point.t).padStart(5)} s ${point.phase.padEnd(10)}] rss ${(point.rssKiB / 1024).toFixed(1)} MiB, heap ${(point.heapUsedKiB / 1024).toFixed(1)}/${(point.heapTotalKiB / 1024).toFixed(1)} MiB, fds ${point.fds}, zombies ${point.zombiesSeen}/${point.zombiesPersistent} persistent, runs ${point.runsDone}, live ${point.live}, queued ${point.queued}, orphans ${point.orphans}, history ${formatBytes(point.historyBytes)}${point.metricsOk ? '' : ', /metrics FAILED'}`;
}

// ------------------------------------------------------------------ summaries

const sparkChars = '▁▂▃▄▅▆▇█';

/** One line of block characters for `values`, at most `width` wide (bucket maxima). */
function sparkline(values: number[], width: number): string {
  if (values.length === 0) return '';
  const bucket = Math.max(1, Math.ceil(values.length / width));
  const columns: number[] = [];
  for (let i = 0; i < values.length; i += bucket) columns.push(Math.max(...values.slice(i, i + bucket)));
  const low = Math.min(...columns);
  const high = Math.max(...columns);
  if (high - low < 1e-9) return sparkChars[0]!.repeat(columns.length);
  return columns.map((value) => sparkChars[Math.min(sparkChars.length - 1, Math.floor(((value - low) / (high - low)) * sparkChars.length))]!).join('');
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length === 0 ? 0 : sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The code under test: the commit and uncommitted daemon files (SOAK_SOURCE_COMMIT names it outside a git checkout). */
function gitState(): Promise<{ commit: string; dirty: string[] }> {
  const git = (...args: string[]) =>
    new Promise<string>((resolve) => execFile('git', ['-C', projectRoot, ...args], (error, stdout) => resolve(error ? '' : stdout)));
  return Promise.all([git('rev-parse', '--short', 'HEAD'), git('status', '--porcelain', '--', 'supervisor', 'bin', 'extractors/sdk')]).then(([commit, status]) => ({
    commit: commit.trim() || (process.env['SOAK_SOURCE_COMMIT'] ? `${process.env['SOAK_SOURCE_COMMIT']} (exported with git archive)` : 'unknown'),
    dirty: status.split('\n').filter(Boolean).map((line) => line.slice(3)),
  }));
}

// ------------------------------------------------------------------ main

async function waitUntil<T>(check: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-soak-'));
  const configFile = path.join(dir, 'duckvisor.yaml');
  const stateDir = path.join(dir, 'state');
  const socket = path.join(dir, 'run', 'duckvisor.sock');
  const jobs = soakJobs(options.withEscaper);
  const port = await freePort();
  writeFileSync(configFile, configYaml(jobs, port, false));
  const git = await gitState();
  const startedAt = new Date();
  const loadAverages: number[][] = [os.loadavg()];
  console.log(`soak: ${options.quick ? 'quick (1 minute)' : `${options.minutes} minute(s), at least ${options.minRuns} runs`}; work dir ${dir}`);

  const daemonLog = openSync(path.join(dir, 'daemon.log'), 'a');
  const env = { ...process.env };
  for (const key of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'JOURNAL_STREAM']) delete env[key];
  const daemon: ChildProcess = spawn(process.execPath, [daemonBin, '--config', configFile], { stdio: ['ignore', daemonLog, daemonLog], env });
  closeSync(daemonLog);
  const daemonPid = daemon.pid!;
  let daemonExit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<void>((resolve) =>
    daemon.on('exit', (code, signal) => {
      daemonExit = { code, signal };
      resolve();
    }),
  );
  const interrupt = () => {
    killQuietly(daemonPid);
    for (const proc of runProcesses(stateDir)) killQuietly(proc.pid);
    process.exit(130);
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);

  const points: Point[] = [];
  let db: Database.Database | null = null;
  const manual = { accepted: 0, refused: 0, errors: [] as string[] };
  const problems: string[] = [];
  let orphansAtEnd: RunProcess[] = [];
  let orphansAfterShutdown: RunProcess[] = [];
  let runs: RunJson[] = [];
  let loadSeconds = 0;
  try {
    await waitUntil(async () => !daemonExit && (await ctl(socket, 'status')).code === 0, 30_000, 'the daemon to answer status');
    db = new Database(path.join(stateDir, 'history.sqlite'), { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');

    // Idle baseline: the daemon is up, no job is scheduled yet.
    await sleep(3000);
    const t0Idle = Date.now();
    points.push(await takePoint('idle-start', t0Idle, daemonPid, socket, port, db, stateDir));
    console.log(describePoint(points.at(-1)!));

    // Load: schedules on (reload), plus the manual job started through duckvisorctl.
    writeFileSync(configFile, configYaml(jobs, port, true));
    const reloadOn = await ctl(socket, 'reload');
    if (reloadOn.code !== 0) throw new Error(`reload with schedules failed: ${reloadOn.stderr}${reloadOn.stdout}`);
    const t0 = Date.now();
    let loading = true;
    const manualJob = jobs.find((job) => job.manual)!.name;
    const starter = (async () => {
      while (loading) {
        const result = await ctl(socket, 'start', manualJob);
        if (result.code === 0) manual.accepted += 1;
        else if (/already|queued/.test(result.stderr + result.stdout)) manual.refused += 1;
        else if (manual.errors.length < 5) manual.errors.push(`exit ${result.code}: ${(result.stderr + result.stdout).trim().slice(0, 300)}`);
        await sleep(MANUAL_START_EVERY_MS);
      }
    })();
    const deadline = t0 + options.minutes * 60_000;
    const hardDeadline = deadline + Math.max(10, options.minutes / 2) * 60_000;
    for (;;) {
      const nextAt = t0 + (points.filter((p) => p.phase === 'load').length + 1) * SAMPLE_EVERY_MS;
      await sleep(Math.max(0, nextAt - Date.now()));
      if (daemonExit) throw new Error(`the daemon exited during the soak: ${JSON.stringify(daemonExit)} (log: ${path.join(dir, 'daemon.log')})`);
      const point = await takePoint('load', t0, daemonPid, socket, port, db, stateDir);
      points.push(point);
      console.log(describePoint(point));
      const now = Date.now();
      if (now >= hardDeadline) {
        problems.push(`only ${point.runsDone} runs ended by the hard deadline (wanted ${options.minRuns})`);
        break;
      }
      if (now >= deadline && point.runsDone >= options.minRuns) break;
    }
    loadSeconds = (Date.now() - t0) / 1000;
    loadAverages.push(os.loadavg());

    // Drain to idle: schedules off (reload), manual starts off, wait for live and queued to reach 0.
    loading = false;
    await starter;
    writeFileSync(configFile, configYaml(jobs, port, false));
    const reloadOff = await ctl(socket, 'reload');
    if (reloadOff.code !== 0) throw new Error(`reload without schedules failed: ${reloadOff.stderr}${reloadOff.stdout}`);
    await waitUntil(async () => {
      const status = await ctlJson<StatusJson>(socket, 'status');
      return status.daemon.live === 0 && status.daemon.queued === 0;
    }, 120_000, 'the daemon to drain (no live, no queued run)');
    await sleep(3000);
    const idleEnd = await takePoint('idle-end', t0, daemonPid, socket, port, db, stateDir);
    points.push(idleEnd);
    console.log(describePoint(idleEnd));
    orphansAtEnd = runProcesses(stateDir); // idle: no run is live, so every run process is an orphan

    const history = await ctlJson<RunJson[] | { runs: RunJson[] }>(socket, 'history', '--limit', '100000');
    runs = Array.isArray(history) ? history : history.runs;
  } finally {
    db?.close();
    if (!daemonExit) {
      await ctl(socket, 'shutdown');
      const timer = setTimeout(() => killQuietly(daemonPid), 30_000);
      await exited;
      clearTimeout(timer);
    }
    orphansAfterShutdown = runProcesses(stateDir);
    for (const proc of orphansAfterShutdown) killQuietly(proc.pid);
  }

  // ---------------------------------------------------------------- analysis
  const idleStart = points.find((p) => p.phase === 'idle-start')!;
  const load = points.filter((p) => p.phase === 'load');
  const idleEnd = points.find((p) => p.phase === 'idle-end')!;
  const warmAt = Math.min(60, (options.minutes * 60) / 3);
  const warm = load.find((p) => p.t >= warmAt) ?? load[0]!;
  const lastLoad = load.at(-1)!;
  const afterWarm = load.filter((p) => p.t >= warm.t);
  const rssSlopeMiBPerHour = slope(afterWarm.map((p) => p.t), afterWarm.map((p) => p.rssKiB / 1024)) * 3600;
  const secondHalf = load.filter((p) => p.t >= loadSeconds / 2);
  const rssSecondHalfSlope = slope(secondHalf.map((p) => p.t), secondHalf.map((p) => p.rssKiB / 1024)) * 3600;
  const tail = afterWarm.slice(-Math.max(3, Math.floor(afterWarm.length / 10)));
  const head = afterWarm.slice(0, Math.max(3, Math.floor(afterWarm.length / 10)));
  const rssHeadMedian = median(head.map((p) => p.rssKiB));
  const rssTailMedian = median(tail.map((p) => p.rssKiB));
  const rssGrowth = (rssTailMedian - rssHeadMedian) / rssHeadMedian;
  const rssFlat = isFlatRss(rssHeadMedian * 1024, rssTailMedian * 1024);
  const maxOf = (pick: (p: Point) => number) => Math.max(...points.map(pick));
  const fdGrowth = idleEnd.fds - idleStart.fds;
  const cpuPercent = ((lastLoad.cpuSeconds - idleStart.cpuSeconds) / loadSeconds) * 100;

  const byOutcome = new Map<string, number>();
  const byJob = new Map<string, Map<string, number>>();
  for (const run of runs) {
    const outcome = run.reason ? `${run.state}/${run.reason}` : run.state;
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
    const perJob = byJob.get(run.job) ?? new Map<string, number>();
    perJob.set(outcome, (perJob.get(outcome) ?? 0) + 1);
    byJob.set(run.job, perJob);
  }
  const familyRuns = runs.filter((run) => run.job === 'family');
  const familySwept = familyRuns.filter((run) => /leftover processes stopped/.test(run.detail ?? '')).length;
  const unexpected = runs.filter((run) => {
    const job = jobs.find((j) => j.name === run.job);
    const outcome = run.reason ? `${run.state}/${run.reason}` : run.state;
    return job && outcome !== job.expected;
  });

  if (fdGrowth > FD_GROWTH_ALLOWED) problems.push(`open fds grew by ${fdGrowth} (idle ${idleStart.fds} → idle ${idleEnd.fds}; allowed ${FD_GROWTH_ALLOWED})`);
  if (idleEnd.zombiesSeen > 0) problems.push(`${idleEnd.zombiesSeen} zombie child(ren) of the daemon at the end`);
  if (orphansAtEnd.length > 0) problems.push(`${orphansAtEnd.length} process(es) of finished runs alive at the end: ${orphansAtEnd.slice(0, 5).map((p) => `${p.pid} (${p.args}, run ${p.runId})`).join('; ')}`);
  if (orphansAfterShutdown.length > 0) problems.push(`${orphansAfterShutdown.length} run process(es) alive after the daemon shut down`);
  if (daemonExit && (daemonExit as { code: number | null }).code !== 0) problems.push(`the daemon exited with ${JSON.stringify(daemonExit)} after shutdown`);
  const warnings: string[] = [];
  if (!rssFlat) warnings.push(`RSS not flat: median ${(rssHeadMedian / 1024).toFixed(1)} MiB after warm-up → ${(rssTailMedian / 1024).toFixed(1)} MiB at the end (+${(rssGrowth * 100).toFixed(0)}%)`);
  const maxOrphansDuringLoad = Math.max(...load.map((p) => p.orphans));
  if (maxOrphansDuringLoad > 0) warnings.push(`up to ${maxOrphansDuringLoad} process(es) of runs ended > ${ORPHAN_GRACE_MS / 1000} s earlier were alive at a sample during the load`);
  const maxPersistentZombies = Math.max(...points.map((p) => p.zombiesPersistent));
  if (maxPersistentZombies > 0) warnings.push(`up to ${maxPersistentZombies} zombie child(ren) persisted ≥ 1 s at a sample during the load`);
  if (unexpected.length > 0) warnings.push(`${unexpected.length} run(s) ended differently from their job's expected outcome`);
  if (manual.errors.length > 0) warnings.push(`duckvisorctl start failed unexpectedly: ${manual.errors.join(' | ')}`);
  if (points.some((p) => !p.metricsOk)) warnings.push('/metrics did not answer at some sample');

  const summary = {
    loadSeconds: Math.round(loadSeconds),
    runsTotal: runs.length,
    runsPerMinute: Math.round((idleEnd.runsDone / loadSeconds) * 60),
    rss: {
      idleStartMiB: idleStart.rssKiB / 1024,
      warmMiB: warm.rssKiB / 1024,
      warmAtSeconds: warm.t,
      endLoadMiB: lastLoad.rssKiB / 1024,
      idleEndMiB: idleEnd.rssKiB / 1024,
      maxMiB: maxOf((p) => p.rssKiB) / 1024,
      hwmMiB: idleEnd.hwmKiB / 1024,
      medianAfterWarmUpMiB: rssHeadMedian / 1024,
      medianAtEndMiB: rssTailMedian / 1024,
      growthFraction: rssGrowth,
      slopeMiBPerHour: rssSlopeMiBPerHour,
      secondHalfSlopeMiBPerHour: rssSecondHalfSlope,
      flat: rssFlat,
    },
    heapUsed: {
      idleStartMiB: idleStart.heapUsedKiB / 1024,
      warmMiB: warm.heapUsedKiB / 1024,
      endLoadMiB: lastLoad.heapUsedKiB / 1024,
      idleEndMiB: idleEnd.heapUsedKiB / 1024,
      maxMiB: maxOf((p) => p.heapUsedKiB) / 1024,
      heapTotalIdleEndMiB: idleEnd.heapTotalKiB / 1024,
    },
    keepRuns: KEEP_RUNS,
    fds: { idleStart: idleStart.fds, warm: warm.fds, endLoad: lastLoad.fds, idleEnd: idleEnd.fds, max: maxOf((p) => p.fds), growth: fdGrowth },
    zombies: { maxSeen: maxOf((p) => p.zombiesSeen), maxPersistent: maxPersistentZombies, atEnd: idleEnd.zombiesSeen },
    orphans: { maxDuringLoad: maxOrphansDuringLoad, atEnd: orphansAtEnd, afterShutdown: orphansAfterShutdown },
    daemonCpuPercent: cpuPercent,
    historyBytesEnd: idleEnd.historyBytes,
    manualStarts: manual,
    unexpectedRuns: unexpected.slice(0, 20),
    unexpectedCount: unexpected.length,
    daemonExit,
    family: { runs: familyRuns.length, leftoversStopped: familySwept },
  };
  const pass = problems.length === 0;
  const json = {
    name: 'soak',
    date: startedAt.toISOString(),
    command: options.quick ? QUICK_COMMAND : FULL_COMMAND,
    settings: { minutes: options.minutes, quick: options.quick, minRuns: options.minRuns, concurrency: CONCURRENCY, sampleEveryMs: SAMPLE_EVERY_MS, jobs },
    machine: machineLine(),
    loadAverages,
    git,
    pass,
    problems,
    warnings,
    summary,
    byOutcome: Object.fromEntries([...byOutcome].sort((a, b) => b[1] - a[1])),
    byJob: Object.fromEntries([...byJob].map(([job, counts]) => [job, Object.fromEntries(counts)])),
    points,
  };

  const mib = (value: number) => `${value.toFixed(1)} MiB`;
  const slopeSpan = lastLoad.t - warm.t;
  const signed = (value: number) => `${value >= 0 ? '+' : ''}${value.toFixed(1)}`;
  const slopeText = slopeSpan >= 600 ? `; least-squares slope after warm-up ${signed(rssSlopeMiBPerHour)} MiB/hour, over the second half ${signed(rssSecondHalfSlope)} MiB/hour` : '';
  const windowSeconds = Math.max(60, Math.ceil(loadSeconds / 6 / 60) * 60);
  const windows: string[] = [];
  for (let from = warm.t; from < lastLoad.t; from += windowSeconds) {
    const inside = load.filter((p) => p.t >= from && p.t < from + windowSeconds).map((p) => p.rssKiB / 1024);
    if (inside.length > 0) windows.push(`| ${Math.round(from / 60)}–${Math.round((from + windowSeconds) / 60)} min | ${mib(Math.min(...inside))} | ${mib(median(inside))} | ${mib(Math.max(...inside))} |`);
  }
  const loadPoints = load.map((p) => p.rssKiB / 1024);
  const secondsPerChar = Math.max(1, Math.ceil(load.length / 90)) * (SAMPLE_EVERY_MS / 1000);
  const jobRows = jobs.map((job) => {
    const counts = byJob.get(job.name) ?? new Map<string, number>();
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const outcomes = [...counts].sort((a, b) => b[1] - a[1]).map(([outcome, n]) => `${outcome} ${n}`).join(', ');
    return `| \`${job.name}\` | ${job.command.slice(1).map((a) => path.basename(a)).join(' ')}${job.extra ? ` (${Object.entries(job.extra).map(([k, v]) => `${k}: ${v}`).join('; ')})` : ''} | ${job.expected} | ${total} | ${outcomes || '-'} |`;
  });
  const markdown = `# Soak: the daemon under ${Math.round(loadSeconds / 60)} minute(s) of short runs

A real \`duckvisord\` (the built \`bin/duckvisord.js\`, its own process) supervised ${jobs.length} command jobs at
concurrency ${CONCURRENCY} for ${Math.round(loadSeconds)} s: ${jobs.filter((job) => !job.manual).length} restarted by their cron \`schedule\` every second ("skip if
still running"), one (\`manual-ok\`) started by \`duckvisorctl start\` every ${MANUAL_START_EVERY_MS / 1000} s; a \`killed\` alert hook
(a command) ran on every kill, and \`/metrics\` was scraped at each sample. Every ${SAMPLE_EVERY_MS / 1000} s the harness read the daemon's
RSS (\`/proc/<pid>/status\` VmRSS), open fds (\`/proc/<pid>/fd\`), zombie children (state Z, ppid = daemon,
re-checked 1 s later), runs ended, and orphans (processes whose environ carries this daemon's
\`DUCKVISOR_STATE_DIR\` and the \`DUCKVISOR_RUN_ID\` of a run that ended > ${ORPHAN_GRACE_MS / 1000} s earlier). Idle baselines: before the
schedules were switched on, and after they were switched off (\`duckvisorctl reload\`) and the daemon drained. ${json.date.slice(0, 16).replace('T', ' ')} UTC.

**Verdict: ${pass ? 'PASS' : 'FAIL'}** — ${pass ? `no fd growth beyond ${FD_GROWTH_ALLOWED}, no zombie, no orphan at the end` : problems.join('; ')}.
RSS ${rssFlat ? 'flat' : 'NOT flat'}: median ${mib(rssHeadMedian / 1024)} just after warm-up (${warm.t} s) vs ${mib(rssTailMedian / 1024)} at the end (${rssGrowth >= 0 ? '+' : ''}${(rssGrowth * 100).toFixed(1)}%${slopeText}); "flat" means ${FLAT_RSS_MEANING}.
${warnings.length ? `\nObservations: ${warnings.join('; ')}.\n` : ''}
| measure | idle start | at ${warm.t} s (warm) | end of load | idle end | max |
| --- | --- | --- | --- | --- | --- |
| daemon RSS | ${mib(idleStart.rssKiB / 1024)} | ${mib(warm.rssKiB / 1024)} | ${mib(lastLoad.rssKiB / 1024)} | ${mib(idleEnd.rssKiB / 1024)} | ${mib(summary.rss.maxMiB)} |
| daemon V8 heap used (of allocated) | ${mib(idleStart.heapUsedKiB / 1024)} (${mib(idleStart.heapTotalKiB / 1024)}) | ${mib(warm.heapUsedKiB / 1024)} (${mib(warm.heapTotalKiB / 1024)}) | ${mib(lastLoad.heapUsedKiB / 1024)} (${mib(lastLoad.heapTotalKiB / 1024)}) | ${mib(idleEnd.heapUsedKiB / 1024)} (${mib(idleEnd.heapTotalKiB / 1024)}) | ${mib(summary.heapUsed.maxMiB)} |
| open fds | ${idleStart.fds} | ${warm.fds} | ${lastLoad.fds} | ${idleEnd.fds} | ${summary.fds.max} |
| zombie children (seen / persisting 1 s) | ${idleStart.zombiesSeen} / ${idleStart.zombiesPersistent} | ${warm.zombiesSeen} / ${warm.zombiesPersistent} | ${lastLoad.zombiesSeen} / ${lastLoad.zombiesPersistent} | ${idleEnd.zombiesSeen} / ${idleEnd.zombiesPersistent} | ${summary.zombies.maxSeen} / ${summary.zombies.maxPersistent} |
| orphans | ${idleStart.orphans} | ${warm.orphans} | ${lastLoad.orphans} | ${orphansAtEnd.length} | ${Math.max(maxOrphansDuringLoad, orphansAtEnd.length)} |
| runs ended | ${idleStart.runsDone} | ${warm.runsDone} | ${lastLoad.runsDone} | ${idleEnd.runsDone} | |
| history.sqlite (+wal) | ${formatBytes(idleStart.historyBytes)} | ${formatBytes(warm.historyBytes)} | ${formatBytes(lastLoad.historyBytes)} | ${formatBytes(idleEnd.historyBytes)} | |

Daemon RSS over the load (${mib(Math.min(...loadPoints))} … ${mib(Math.max(...loadPoints))}, one character ≈ ${secondsPerChar} s, bucket maxima):

\`\`\`
${sparkline(loadPoints, 90)}
\`\`\`

| daemon RSS during the load | min | median | max |
| --- | --- | --- | --- |
${windows.join('\n')}

${idleEnd.runsDone} runs ended (${summary.runsPerMinute}/minute; history keeps the newest ${KEEP_RUNS} per job, \`history.keep_runs\`, so the outcome counts below cover the ${runs.length} kept); daemon CPU ${cpuPercent.toFixed(0)}% of one core on average; VmHWM ${mib(summary.rss.hwmMiB)};
\`duckvisorctl start\`: ${manual.accepted} accepted, ${manual.refused} refused as already live/queued; \`family\` runs whose
left-behind grandchildren (one in the group, one setsid) the daemon stopped after the script exited: ${familySwept} of ${familyRuns.length}. By final state/reason:
${[...byOutcome].sort((a, b) => b[1] - a[1]).map(([outcome, n]) => `\`${outcome}\` ${n}`).join(', ')}.

| job | command | expected | runs | outcomes |
| --- | --- | --- | --- | --- |
${jobRows.join('\n')}

Machine: ${json.machine}; load average ${loadAverages.map((l) => l.map((v) => v.toFixed(1)).join('/')).join(' → ')}.
The machine was shared with other work while this ran. Code: ${git.commit}${git.dirty.length ? ` with uncommitted changes in ${git.dirty.join(', ')}` : ''}.

Command: \`${json.command}\` (every sample: \`${options.quick ? 'bench/work/soak-quick.json' : 'bench/results/soak.json'}\`; \`--quick\` runs 1 minute for CI and exits
non-zero on fd growth > ${FD_GROWTH_ALLOWED}, a zombie or an orphan at the end).
`;
  const outDir = options.quick ? path.join(projectRoot, 'bench', 'work') : path.join(projectRoot, 'bench', 'results');
  const base = options.quick ? 'soak-quick' : 'soak';
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, `${base}.json`), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(path.join(outDir, `${base}.md`), markdown);
  if (!options.quick) assembleResults();
  console.log(markdown);
  console.log(`written: ${path.join(outDir, base)}.md + .json`);
  if (pass) rmSync(dir, { recursive: true, force: true });
  else console.log(`work dir kept for inspection: ${dir}`);
  return pass ? 0 : 1;
}

process.exitCode = await main().catch((error: unknown) => {
  console.error(`soak: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  return 2;
});
