// The seven scenarios of the peer comparison. Every measurement comes from the workload's own
// timestamped log and from /proc polled by the harness, never from a supervisor's account.
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../supervisor/paths.js';
import type { Driver, Workload } from './driver.js';
import { isAlive, killQuietly, readProcStat, readRss, readSwap, waitForDeath } from './proc-watch.js';
import { reapTrial, trialEnvKey, trialProcesses } from './reap.js';
import { readStateLog, waitForEntry, type StateEntry } from './state-log.js';

const MiB = 1024 * 1024;
const workloadsDir = path.join(projectRoot, 'bench', 'workloads');

export interface TrialResult {
  /** Did the supervisor stop the misbehaving process within the observation window? */
  caught: boolean;
  /** The scenario's latency in ms (over-limit time, detection time, or time to full death). */
  latencyMs?: number;
  /** Peak memory the workload reached, bytes. */
  peakBytes?: number;
  /** Processes still alive after the stop (scenario 6). */
  survivors?: number;
  /** Supervisor CPU, percent of one core (scenario 7). */
  cpuPercent?: number;
  /** Supervisor CPU during the settle before the window (its start-up work), percent of one core (scenario 7). */
  startupCpuPercent?: number;
  /** Supervisor RSS, bytes (scenario 7). */
  supervisorRss?: number;
  /** How long the harness waited before calling it "not caught". */
  windowMs: number;
  /** Processes still alive after the supervisor's shutdown, killed by the harness (0 for a clean shutdown). */
  leftovers?: number;
}

export interface RunOptions {
  quick: boolean;
  workRoot: string;
}

export interface Scenario {
  id: string;
  title: string;
  /** Which drivers can express this scenario's limit at all; the rest get the reason. */
  expressible: Record<string, true | string>;
  /** The goal stated for duckvisor, in words, and a check against its median (and the peers', where the goal names one). */
  goal: string;
  goalMet(results: TrialResult[], peers: ReadonlyMap<string, TrialResult[]>): boolean;
  /** Why a quick run (--quick) cannot judge the goal, when it measures something else than the goal states. */
  quickCaveat?: string;
  /**
   * True when this driver's trial may run at the same time as other such trials: a peer's detection
   * latency dominated by its own check period (PM2 30 s, memmon 60 s) or grace timer, which a neighbour
   * cannot move. duckvisor trials and overhead (CPU) trials always run alone.
   */
  concurrentFor?(driverName: string): boolean;
  /** Memory the workload may reach under a supervisor that never stops it, bytes (bounds concurrency). */
  memoryBytes?: number;
  trial(driver: Driver, options: RunOptions): Promise<TrialResult>;
  /** Runs one repetition under every driver at once (same window for all); scenarios without it run each driver alone. */
  trialTogether?(drivers: Driver[], options: RunOptions): Promise<Map<string, TrialResult>>;
}

const isPeer = (driverName: string) => driverName !== 'duckvisor';

function node(script: string): string[] {
  return [process.execPath, path.join(workloadsDir, script)];
}

/** How long to wait for each supervisor before declaring "not caught": its check period plus margin. */
function windowFor(driver: Driver, options: RunOptions): number {
  if (options.quick) return driver.name === 'duckvisor' ? 10_000 : 6_000;
  if (driver.name === 'pm2') return 35_000;
  if (driver.name.startsWith('supervisord')) return 65_000;
  return 15_000;
}

function trialDir(options: RunOptions, scenario: string, driver: Driver): string {
  return mkdtempSync(path.join(options.workRoot, `${scenario}-${driver.name.replace(/\W+/g, '_')}-`));
}

/**
 * Starts the supervisor on the workloads (each marked with the trial's folder in its environment, which
 * its descendants inherit), runs `body`, then shuts the supervisor down and confirms from /proc that
 * nothing of the trial is left; what is left is killed and counted in `leftovers`.
 */
async function withSupervisor<T>(
  driver: Driver,
  options: RunOptions,
  scenario: string,
  workloads: (dir: string) => Workload[],
  body: (dir: string) => Promise<T>,
): Promise<{ value: T; leftovers: number }> {
  const dir = trialDir(options, scenario, driver);
  const marked = workloads(dir).map((workload) => ({ ...workload, env: { ...workload.env, [trialEnvKey]: dir } }));
  const finish = async (): Promise<number> => {
    const survivors = await driver.shutdown();
    const leftovers = survivors.length + (await reapTrial(dir));
    if (leftovers > 0) console.error(`[bench]   ! ${driver.name} left ${leftovers} process(es) alive after its shutdown (${scenario}); the harness killed them`);
    return leftovers;
  };
  let value: T;
  try {
    await driver.start(marked, dir);
    value = await body(dir);
  } catch (error) {
    await finish().catch(() => 0);
    throw error;
  }
  return { value, leftovers: await finish() };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function latencies(results: TrialResult[]): number[] {
  return results.filter((result) => result.caught && result.latencyMs !== undefined).map((result) => result.latencyMs!);
}

function allCaughtWithin(results: TrialResult[], limitMs: number): boolean {
  return results.length > 0 && results.every((result) => result.caught) && median(latencies(results)) <= limitMs;
}

interface DeathWatch {
  logFile: string;
  victimPid: number;
  diedAt: number | undefined;
  windowMs: number;
  leftovers: number;
}

interface DeathTrial {
  workload: (logFile: string) => Workload;
  /** Waits for the workload to name the process whose death is measured. */
  victim: (logFile: string) => Promise<StateEntry & { victimPid: number }>;
  /** Added to the driver's window (time the workload needs before it misbehaves). */
  extraWindowMs?: number;
  /** Runs at every 5 ms poll while the victim lives (ground truth read from /proc by the harness). */
  onPoll?: (victimPid: number, now: number) => void;
}

/** Runs one workload under a driver and waits for the process named by `victim` to die. */
async function runUntilDeath(driver: Driver, options: RunOptions, scenario: string, trial: DeathTrial): Promise<DeathWatch> {
  const windowMs = windowFor(driver, options) + (trial.extraWindowMs ?? 0);
  const { value, leftovers } = await withSupervisor(driver, options, scenario, (dir) => [trial.workload(path.join(dir, 'state.log'))], async (dir) => {
    const logFile = path.join(dir, 'state.log');
    const pids: number[] = [];
    try {
      const entry = await trial.victim(logFile);
      pids.push(entry.pid, entry.victimPid);
      const onPoll = trial.onPoll;
      const diedAt = await waitForDeath([entry.victimPid], windowMs, onPoll && ((now) => onPoll(entry.victimPid, now)));
      return { logFile, victimPid: entry.victimPid, diedAt, windowMs };
    } finally {
      killQuietly(pids.filter(isAlive));
    }
  });
  return { ...value, leftovers };
}

const leakLimit = 200 * MiB;

const fastLeak: Scenario = {
  id: 'fast-leak',
  title: '1. Fast leak: RSS grows ~100 MB/s past a 200 MiB limit',
  expressible: { duckvisor: true, pm2: true, 'supervisord+memmon': true },
  goal: 'over-limit time ≤ 0.5 s and peak ≤ limit + 64 MB',
  concurrentFor: isPeer,
  memoryBytes: 3200 * MiB,
  goalMet: (results) =>
    allCaughtWithin(results, 500) && median(results.map((result) => result.peakBytes ?? Infinity)) <= leakLimit + 64 * 1000 * 1000,
  async trial(driver, options) {
    const run = await runUntilDeath(driver, options, this.id, {
      workload: (logFile) => ({ name: 'fastleak', argv: node('fast-leak.mjs'), env: { BENCH_STATE_LOG: logFile, BENCH_LEAK_CAP_MB: '3000' }, rssLimit: leakLimit, heartbeat: 'none' }),
      victim: async (logFile) => {
        const start = await waitForEntry(logFile, (entry) => entry.event === 'start', 15_000);
        return { ...start, victimPid: start.pid };
      },
    });
    const entries = readStateLog(run.logFile).filter((entry) => entry.pid === run.victimPid);
    const crossing = entries.find((entry) => (entry.rss ?? 0) > leakLimit);
    const peakBytes = Math.max(0, ...entries.map((entry) => entry.rss ?? 0));
    const caught = run.diedAt !== undefined && crossing !== undefined;
    return { caught, latencyMs: caught ? run.diedAt! - crossing!.t : undefined, peakBytes, windowMs: run.windowMs, leftovers: run.leftovers };
  },
};

const grandchildLeak: Scenario = {
  id: 'grandchild-leak',
  title: '2. Slow leak in a grandchild (~20 MB/s), 200 MiB limit on the job',
  expressible: { duckvisor: true, pm2: true, 'supervisord+memmon': true },
  goal: 'caught within 1 s of the tree crossing the limit',
  concurrentFor: isPeer,
  memoryBytes: 1600 * MiB,
  goalMet: (results) => allCaughtWithin(results, 1000),
  async trial(driver, options) {
    // The grandchild takes 60 MiB at once, then needs ~3 s more to push the tree past the limit; the
    // window is extended by twice that.
    const run = await runUntilDeath(driver, options, this.id, {
      workload: (logFile) => ({
        name: 'gcleak',
        argv: node('grandchild-leak.mjs'),
        env: { BENCH_STATE_LOG: logFile, BENCH_LEAK_HEAD_MB: '60', BENCH_LEAK_CAP_MB: '3000' },
        rssLimit: leakLimit,
        heartbeat: 'none',
      }),
      victim: async (logFile) => {
        const start = await waitForEntry(logFile, (entry) => entry.event === 'start' && typeof entry.child === 'number', 15_000);
        return { ...start, victimPid: start.child! };
      },
      extraWindowMs: 6_000,
    });
    const entries = readStateLog(run.logFile);
    let parentRss = 0;
    let crossing: StateEntry | undefined;
    for (const entry of entries) {
      if (entry.event === 'rss' || entry.event === 'start') parentRss = entry.rss ?? parentRss;
      if (entry.event === 'grandchild-rss' && entry.pid === run.victimPid && (entry.rss ?? 0) + parentRss > leakLimit) {
        crossing = entry;
        break;
      }
    }
    const peakBytes = Math.max(0, ...entries.filter((entry) => entry.pid === run.victimPid).map((entry) => entry.rss ?? 0));
    const caught = run.diedAt !== undefined && crossing !== undefined;
    return { caught, latencyMs: caught ? Math.max(0, run.diedAt! - crossing!.t) : undefined, peakBytes, windowMs: run.windowMs, leftovers: run.leftovers };
  },
};

const swapLimit = 64 * MiB;

const swapThrash: Scenario = {
  id: 'swap-thrash',
  title: '3. Swap thrash: pages pushed to swap (madvise MADV_PAGEOUT), RSS stays low; 64 MiB swap limit',
  expressible: { duckvisor: true, pm2: 'no swap limit (RSS of the main pid only)', 'supervisord+memmon': 'no swap limit (memmon reads ps RSS)' },
  goal: 'caught within 1 s of crossing the swap limit',
  goalMet: (results) => allCaughtWithin(results, 1000),
  async trial(driver, options) {
    // The crossing is taken from two witnesses, the workload's own log and VmSwap read by the harness
    // every 5 ms: the workload logs only after each page-out step, so a supervisor that kills during a
    // step would otherwise leave the log without any entry above the limit.
    const observed: { t: number; swap: number }[] = [];
    const run = await runUntilDeath(driver, options, this.id, {
      // Pushes swap to 4× the limit in 4 MiB steps and holds it there: clearly past the limit, never
      // stopping right at it.
      workload: (logFile) => ({
        name: 'swapthrash',
        argv: ['python3', path.join(workloadsDir, 'swap-thrash.py')],
        env: { BENCH_STATE_LOG: logFile, BENCH_SWAP_MB: String((4 * swapLimit) / MiB), BENCH_STEP_MB: '4' },
        swapLimit,
        heartbeat: 'none',
      }),
      victim: async (logFile) => {
        const start = await waitForEntry(logFile, (entry) => entry.event === 'start', 15_000);
        return { ...start, victimPid: start.pid };
      },
      onPoll: (victimPid, now) => {
        const swap = readSwap(victimPid);
        if (swap > 0) observed.push({ t: now, swap });
      },
    });
    const logged = readStateLog(run.logFile).filter((entry) => entry.pid === run.victimPid).map((entry) => ({ t: entry.t, swap: entry.swap ?? 0 }));
    const timeline = [...logged, ...observed].sort((a, b) => a.t - b.t);
    const crossing = timeline.find((point) => point.swap > swapLimit);
    const peakBytes = Math.max(0, ...timeline.map((point) => point.swap));
    const caught = run.diedAt !== undefined && crossing !== undefined;
    return { caught, latencyMs: caught ? run.diedAt! - crossing!.t : undefined, peakBytes, windowMs: run.windowMs, leftovers: run.leftovers };
  },
};

const stallTimeout = 3000;
const heartbeatTimeout = 3000;

/** What differs between the two liveness scenarios (hang, blocked loop); the trial itself is shared. */
interface LivenessCase {
  id: string;
  title: string;
  expressible: Scenario['expressible'];
  goal: string;
  timeoutMs: number;
  workload: (logFile: string) => Workload;
  /** The state-log event the workload writes when it stops being live. */
  markerEvent: string;
  /** The moment detection is measured from, given the victim's state-log entries. */
  measuredFrom: (entries: StateEntry[]) => StateEntry | undefined;
}

/** A scenario where the workload stays alive but stops being live; caught = killed within the window. */
function livenessScenario(liveness: LivenessCase): Scenario {
  return {
    id: liveness.id,
    title: liveness.title,
    expressible: liveness.expressible,
    goal: liveness.goal,
    goalMet: (results) => allCaughtWithin(results, liveness.timeoutMs + 1000),
    async trial(driver, options) {
      const run = await runUntilDeath(driver, options, liveness.id, {
        workload: liveness.workload,
        victim: async (logFile) => {
          const marker = await waitForEntry(logFile, (entry) => entry.event === liveness.markerEvent, 15_000);
          return { ...marker, victimPid: marker.pid };
        },
        extraWindowMs: liveness.timeoutMs,
      });
      const from = liveness.measuredFrom(readStateLog(run.logFile).filter((entry) => entry.pid === run.victimPid));
      const caught = run.diedAt !== undefined;
      return { caught, latencyMs: caught && from ? run.diedAt! - from.t : undefined, windowMs: run.windowMs, leftovers: run.leftovers };
    },
  };
}

const hang = livenessScenario({
  id: 'hang',
  title: `4. Hang: progress lines stop, the process stays alive (stall_timeout ${stallTimeout / 1000} s)`,
  expressible: { duckvisor: true, pm2: 'no progress or stall detection', 'supervisord+memmon': 'no progress or stall detection' },
  goal: `caught within stall_timeout + 1 s (${(stallTimeout + 1000) / 1000} s after the last progress)`,
  timeoutMs: stallTimeout,
  workload: (logFile) => ({ name: 'hang', argv: node('hang.mjs'), env: { BENCH_STATE_LOG: logFile, BENCH_WORK_MS: '1000' }, stallTimeout, heartbeat: 'stdout' }),
  markerEvent: 'hang',
  measuredFrom: (entries) => [...entries].reverse().find((entry) => entry.event === 'progress') ?? entries.find((entry) => entry.event === 'hang'),
});

const blockedLoop = livenessScenario({
  id: 'blocked-loop',
  title: `5. Silent death of IPC: the event loop blocks (heartbeat_timeout ${heartbeatTimeout / 1000} s)`,
  expressible: { duckvisor: true, pm2: 'no liveness heartbeat', 'supervisord+memmon': 'no liveness heartbeat' },
  goal: `caught within heartbeat_timeout + 1 s (${(heartbeatTimeout + 1000) / 1000} s after the loop blocks)`,
  timeoutMs: heartbeatTimeout,
  workload: (logFile) => ({ name: 'blocked', argv: node('blocked-loop.mjs'), env: { BENCH_STATE_LOG: logFile, BENCH_WORK_MS: '1000' }, heartbeatTimeout, heartbeat: 'ipc' }),
  markerEvent: 'blocked',
  measuredFrom: (entries) => entries.find((entry) => entry.event === 'blocked'),
});

const stubbornTree: Scenario = {
  id: 'stubborn-tree',
  title: '6. Operator stop of a job that ignores SIGTERM and has a grandchild that escaped via setsid',
  expressible: { duckvisor: true, pm2: true, 'supervisord+memmon': true },
  goal: 'zero survivors; full death within stop_grace (10 s) + 1 s',
  goalMet: (results) => results.length > 0 && results.every((result) => result.caught && result.survivors === 0) && median(latencies(results)) <= 11_000,
  // supervisord's outcome is set by its stopwaitsecs timer (10 s) and the escapee it cannot see.
  concurrentFor: (driverName) => driverName.startsWith('supervisord'),
  async trial(driver, options) {
    const windowMs = 20_000;
    const { value, leftovers } = await withSupervisor(
      driver,
      options,
      this.id,
      (dir) => [{ name: 'stubborn', argv: node('stubborn-tree.mjs'), env: { BENCH_STATE_LOG: path.join(dir, 'state.log') }, heartbeat: 'none' }],
      async (dir) => {
        let pids: number[] = [];
        try {
          const children = await waitForEntry(path.join(dir, 'state.log'), (entry) => entry.event === 'children', 15_000);
          pids = [children.pid, ...(children.pids ?? [])];
          const stoppedAt = Date.now();
          const stopping = driver.stop('stubborn');
          const diedAt = await waitForDeath(pids, windowMs);
          await stopping;
          const survivors = pids.filter(isAlive).length;
          return { caught: diedAt !== undefined, latencyMs: diedAt !== undefined ? diedAt - stoppedAt : undefined, survivors, windowMs };
        } finally {
          // The escapee is a survivor to count, not a leftover of the shutdown.
          killQuietly(pids.filter(isAlive));
        }
      },
    );
    return { ...value, leftovers };
  },
};

/** Waits until `count` processes of the trial are alive (every idle child has started). */
async function waitForTrialProcesses(dir: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (trialProcesses(dir).length < count) {
    if (Date.now() > deadline) throw new Error(`only ${trialProcesses(dir).length} of ${count} children started within ${timeoutMs} ms`);
    await sleep(200);
  }
}

// The supervisors of one overhead repetition shut down (50 children each) while the next trial starts;
// that trial begins its work only once those shutdowns are over.
let pendingShutdown: Promise<unknown> = Promise.resolve();

/** Resolves once no overhead trial's supervisor is still shutting down; await it before any other trial. */
export function overheadShutdownsDone(): Promise<unknown> {
  return pendingShutdown;
}

/** How long every supervisor runs its idle children before the measured window opens, ms. */
export function overheadSettleMs(options: RunOptions): number {
  return options.quick ? 1000 : 20_000;
}

// Why all supervisors in one window: each is measured by the CPU time of its own processes, which
// neighbours using a few percent of a core cannot move, while the machine's drift (page cache, other
// tenants, thermal state) then hits all of them in the very same minute. Why a 20 s settle: a
// supervisor's start-up work (JIT compilation, its first heap reductions, first samples and log files)
// is paid once, not per minute of supervision; it is measured and reported separately (startupCpuPercent).
/** Runs 50 idle children under every driver at once and measures each supervisor over the same window. */
async function overheadTogether(drivers: Driver[], options: RunOptions): Promise<Map<string, TrialResult>> {
  const children = options.quick ? 10 : 50;
  const durationMs = options.quick ? 10_000 : 60_000;
  const settleMs = overheadSettleMs(options);
  await pendingShutdown;
  const trials = drivers.map((driver) => {
    const dir = trialDir(options, 'overhead', driver);
    const workloads: Workload[] = Array.from({ length: children }, (_, index) => ({
      name: `idle${String(index).padStart(2, '0')}`,
      argv: node('idle.mjs'),
      env: { [trialEnvKey]: dir },
      rssLimit: 512 * MiB,
      heartbeat: 'none' as const,
    }));
    const result: TrialResult = { caught: false, windowMs: durationMs };
    return { driver, dir, workloads, result, started: false };
  });
  const finishAll = () =>
    Promise.all(
      trials.map(async (trial) => {
        if (!trial.started) return;
        const survivors = await trial.driver.shutdown();
        trial.result.leftovers = survivors.length + (await reapTrial(trial.dir));
        if (trial.result.leftovers > 0) console.error(`[bench]   ! ${trial.driver.name} left ${trial.result.leftovers} process(es) alive after its shutdown (overhead); the harness killed them`);
      }),
    );
  try {
    // One after the other: each supervisor's own start (50 spawns) does not compete with another's.
    for (const trial of trials) {
      const startedAt = Date.now();
      trial.started = true;
      await trial.driver.start(trial.workloads, trial.dir);
      const upAfter = Date.now() - startedAt;
      await waitForTrialProcesses(trial.dir, children, 60_000);
      console.error(`[bench]   ${trial.driver.name}: supervisor up in ${upAfter} ms, ${children} children in ${Date.now() - startedAt} ms`);
    }
    const cpuOf = (pids: number[]) => pids.reduce((sum, pid) => sum + (readProcStat(pid)?.cpuSeconds ?? 0), 0);
    const settleFrom = Date.now();
    const atSettle = trials.map((trial) => cpuOf(trial.driver.supervisorPids()));
    await sleep(settleMs);
    const settled = (Date.now() - settleFrom) / 1000;
    const before = trials.map((trial) => cpuOf(trial.driver.supervisorPids()));
    const measuredFrom = Date.now();
    await sleep(durationMs);
    const after = trials.map((trial) => cpuOf(trial.driver.supervisorPids()));
    const elapsed = (Date.now() - measuredFrom) / 1000;
    trials.forEach((trial, index) => {
      const supervisor = trial.driver.supervisorPids();
      Object.assign(trial.result, {
        caught: supervisor.length > 0,
        cpuPercent: ((after[index]! - before[index]!) / elapsed) * 100,
        startupCpuPercent: ((before[index]! - atSettle[index]!) / settled) * 100,
        supervisorRss: supervisor.reduce((sum, pid) => sum + readRss(pid), 0),
      });
    });
  } catch (error) {
    await finishAll().catch(() => undefined);
    throw error;
  }
  pendingShutdown = finishAll().catch((error: Error) => console.error(`[bench]   ✗ shutdown after overhead failed: ${error.message}`));
  return new Map(trials.map((trial) => [trial.driver.name, trial.result]));
}

const overhead: Scenario = {
  id: 'overhead',
  title: '7. Overhead: idle children supervised (supervisor CPU, % of one core, and RSS)',
  expressible: { duckvisor: true, pm2: true, 'supervisord+memmon': true },
  goal: '≤ 1% of one core for 50 children at the default sampling interval, and below PM2',
  // "Below PM2" is judged only when PM2 was measured in the same run (a partial run may leave it out).
  goalMet: (results, peers) => {
    if (results.length === 0) return false;
    const ours = median(results.map((result) => result.cpuPercent ?? Infinity));
    const pm2 = peers.get('pm2') ?? [];
    return ours <= 1 && (pm2.length === 0 || ours < median(pm2.map((result) => result.cpuPercent ?? Infinity)));
  },
  quickCaveat: 'a quick run supervises 10 children for a 10 s window, not 50 for 60 s',
  async trial(driver, options) {
    return (await overheadTogether([driver], options)).get(driver.name)!;
  },
  trialTogether: overheadTogether,
};

export const scenarios: Scenario[] = [fastLeak, grandchildLeak, swapThrash, hang, blockedLoop, stubbornTree, overhead];
