// The daemon: owns the config, the history, the scheduler, the live runs and the control server, and
// drives each run through queued → starting → running → publishing → succeeded | failed | killed | interrupted.
// Everything that can blow up (extractors, commands, the publisher) runs in a supervised child.
import { closeSync, fstatSync, mkdirSync, openSync, readSync, rmSync } from 'node:fs';
import { AlertDispatcher, type AlertPayload } from './alerts.js';
import { startHttpServer, type HttpServerHandle } from './http.js';
import { DaemonMetrics } from './metrics.js';
import { historyDefaults } from './config-schema.js';
import { newPersistedMarks, shouldPersist, type PersistedMarks } from './sample-persist.js';
import { JobSchedules, skipIfStillRunning } from './schedule.js';
import { createWebHandler, type WebHandler } from './web.js';
import path from 'node:path';
import { diffConfigs, loadConfig } from './config.js';
import { ControlError, createControlHandler, listenControlSocket, type ControlServer, type ControlTarget, type CycleView, type JobStatus, type RunDetail, type StartResult, type StatusView } from './control.js';
import { dependencyFailure, dependencyOrder, hasDependencies, planCycle, withDependencies, withDependents, type CycleKind, type CyclePlan } from './cycles.js';
import { acquireStateDirLock, type DaemonLock } from './daemon-lock.js';
import { History, isoTime, runView, type CycleRow, type RunFilter, type RunRow, type RunUpdate, type RunView } from './history.js';
import { silentLog, type Log } from './log.js';
import { compiledPath } from './paths.js';
import { isSameProcessAlive, killLeftoverRun } from './recovery.js';
import { retryDelay, retryReasonFor } from './retry.js';
import { startRun as realStartRun } from './run.js';
import { newRunId, safeName, Scheduler } from './scheduler.js';
import { terminalStates, type AlertEventKind, type DaemonConfig, type JobConfig, type KillReason, type Progress, type RetryReason, type RunHandle, type RunObserver, type RunOutcome, type RunSpec, type RunState, type Sample } from './types.js';
import { childEnv } from '../extractors/sdk/protocol.js';
import { extractorProcessEnv } from '../extractors/sdk/process-env.js';

/** systemd/daemon variables a child must not inherit (it would talk to systemd as if it were us). */
export const daemonOnlyEnv = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'INVOCATION_ID', 'JOURNAL_STREAM'] as const;

/** How long the publisher may wait without progress (it waits on a locked warehouse by design). */
const publisherStallTimeoutMs = 24 * 3600_000;

/** How often progress is written to history at most, per run (the last value is always written). */
const progressWriteIntervalMs = 500;

/** How often finished runs beyond the history retention are pruned, ms (also at start and every `pruneEveryRuns` ends). */
export const pruneIntervalMs = 3600_000;
/** Finished runs between two prunes, so a busy daemon does not wait an hour to trim. */
export const pruneEveryRuns = 200;

/** Window over which the live progress rate is computed. */
const rateWindowMs = 60_000;

/**
 * sysexits.h EX_DATAERR. The child contract: a job (extractor or command) whose output failed its validation
 * exits with this code; the run ends `failed` with reason `validation` and is retried only when the job's
 * `retries.on` names `validation` (a crash would be retried by default, but bad data repeats).
 */
export const EXIT_VALIDATION_FAILED = 65;

export interface DaemonOptions {
  config: DaemonConfig;
  log?: Log;
  /** Run autostart jobs to completion, then resolve `finished`. */
  once?: boolean;
  /** The process layer; replaceable for tests of the lifecycle alone. */
  startRun?: (spec: RunSpec, observer: RunObserver) => RunHandle;
  env?: NodeJS.ProcessEnv;
  /** Receives a one-line summary whenever a run changes state (for systemd STATUS=). */
  onStatus?: (line: string) => void;
  /** Called once when a graceful shutdown begins, whatever asked for it (signal, API), before runs stop. */
  onStopping?: () => void;
}

interface LiveRun {
  id: string;
  job: JobConfig;
  phase: 'starting' | 'running' | 'publishing';
  handle: RunHandle | null;
  publisher: RunHandle | null;
  startedAt: number;
  progressPoints: Array<{ at: number; done: number }>;
  progress: Progress | null;
  lastProgressWrite: number;
  progressTimer: NodeJS.Timeout | undefined;
  lastSample: Sample | null;
  /** What the last sample stored in history said (samples are stored at about one a second, see sample-persist.ts). */
  persisted: PersistedMarks;
  /** Whether `lastSample` has a row in history (the run's last sample always gets one). */
  lastSampleStored: boolean;
  stop: { reason: KillReason; detail: string; shutdown: boolean } | null;
  /** The measured value and limit of the kill decision, for alerts. */
  kill: { measured: number | null; limit: number | null } | null;
  /** The last `error` log message of the child (the reason behind an exit 65). */
  lastError: string | null;
  /** Resolves when the run reached a terminal state. */
  ended: Promise<RunRow>;
  resolveEnded: (row: RunRow) => void;
  log: Log;
}

/** The final outcome of `--once`: each job's last run (skipped ones included), in dependency order. */
export interface OnceSummary {
  ok: boolean;
  runs: RunView[];
}

// Why a class: one object owns every piece of daemon state so shutdown and reload have one place to act.
/** The supervisor daemon. Create with `Daemon.start(options)`. */
export class Daemon implements ControlTarget {
  config: DaemonConfig;
  readonly history: History;
  readonly startedAt = Date.now();
  /** Resolves when the daemon has stopped (after shutdown or, in once mode, when all work is done). */
  readonly finished: Promise<OnceSummary>;
  private readonly log: Log;
  private readonly scheduler: Scheduler;
  private readonly live = new Map<string, LiveRun>();
  private readonly publishQueue: LiveRun[] = [];
  private publishing: LiveRun | null = null;
  private readonly startRunImpl: (spec: RunSpec, observer: RunObserver) => RunHandle;
  private readonly env: NodeJS.ProcessEnv;
  private control: ControlServer | null = null;
  private lock: DaemonLock;
  private shuttingDown = false;
  private closed = false;
  private readonly once: boolean;
  private onceJobs = new Set<string>();
  /** The cycle of `--once` (its summary), when there were autostart jobs. */
  private onceCycle: string | null = null;
  /** Dependency cycles not yet finished, by id. */
  private readonly openCycles = new Map<string, CycleRow>();
  private advancing = false;
  private advanceAgain = false;
  private resolveFinished!: (summary: OnceSummary) => void;
  private shutdownPromise: Promise<void> | null = null;
  private readonly onStatus: (line: string) => void;
  private readonly onStopping: () => void;
  /** Prometheus series (served on control.http /metrics). */
  readonly metrics: DaemonMetrics;
  private pruneTimer: NodeJS.Timeout | undefined;
  private pruning = false;
  private endsSincePrune = 0;
  private readonly alerts: AlertDispatcher;
  private readonly schedules: JobSchedules;
  private http: HttpServerHandle | null = null;
  private historyOpen = true;
  private web: WebHandler | null = null;

  private constructor(options: DaemonOptions, lock: DaemonLock, history: History) {
    this.config = options.config;
    this.log = options.log ?? silentLog;
    this.once = options.once ?? false;
    this.startRunImpl = options.startRun ?? realStartRun;
    this.env = options.env ?? process.env;
    this.onStatus = options.onStatus ?? (() => {});
    this.onStopping = options.onStopping ?? (() => {});
    // The daemon's own process metrics (and their event-loop timer) only when something can scrape them.
    this.metrics = new DaemonMetrics({ processMetrics: Boolean(options.config.control.http) });
    this.alerts = new AlertDispatcher(
      this.config.alerts,
      (delivery, subject) => {
        this.metrics.recordAlert(delivery.ok);
        if (!this.historyOpen) return;
        this.history.addEvent({
          runId: subject.run,
          job: subject.job,
          kind: 'alert',
          message: `${delivery.kind} → ${delivery.alert}: ${delivery.ok ? 'delivered' : 'FAILED'} (${delivery.detail}, try ${delivery.attempt})`,
          data: delivery,
        });
      },
      { env: this.env },
    );
    this.schedules = new JobSchedules(
      skipIfStillRunning(
        (job) => this.jobHasPendingRun(job) || this.jobInOpenCycle(job),
        (job) => {
          if (!this.shuttingDown) this.scheduledStart(job);
        },
        (job) => this.history.addEvent({ job, kind: 'schedule_skip', message: `scheduled start skipped: job '${job}' is still running or queued` }),
      ),
      { onError: (job, error) => this.log.error('schedule tick failed', { job, error: String(error) }) },
    );
    this.lock = lock;
    this.history = history;
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    this.scheduler = new Scheduler(history, {
      concurrency: () => this.config.concurrency,
      liveCount: () => [...this.live.values()].filter((run) => run.phase !== 'publishing').length,
      jobIsLive: (job) => [...this.live.values()].some((run) => run.job.name === job),
      jobExists: (job) => this.config.jobs.has(job),
      runPaths: (job, runId, chainId) => this.runPaths(job, runId, chainId),
      launch: (run) => this.launch(run),
      abandon: (run, detail) => this.endRun(run.id, { state: 'failed', reason: 'config', detail }, `failed: ${detail}`),
      queued: () => this.emitStatus(),
    });
    // Read at scrape time as well, so /metrics never lags a queue change that emitted no status.
    this.metrics.readAtScrape({ queueLength: () => this.scheduler.pending().length, liveRuns: () => this.live.size });
  }

  /**
   * Takes the state-dir lock, opens the history, recovers runs a crashed daemon left behind, listens on the
   * control socket, and starts dispatching (in once mode: after queueing every autostart job).
   */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const config = options.config;
    mkdirSync(config.state_dir, { recursive: true });
    const lock = acquireStateDirLock(config.state_dir);
    let history: History | undefined;
    let daemon: Daemon | undefined;
    try {
      const startLog = options.log ?? silentLog;
      history = History.open(path.join(config.state_dir, 'history.sqlite'), {
        onWriteError: (error) => startLog.error('could not record samples', { error: error.message }),
      });
      daemon = new Daemon(options, lock, history);
      // Recover before listening: once the socket answers, no leftover of a crashed daemon is alive.
      await daemon.recover();
      const controlHandler = createControlHandler(daemon);
      daemon.control = await listenControlSocket(config.control.socket, controlHandler);
      if (config.control.http) {
        daemon.web = createWebHandler(controlHandler, () => daemon!.status());
        daemon.http = await startHttpServer({ listen: config.control.http, token: config.control.http_token, handler: daemon.web }, daemon.metrics);
        daemon.log.info('http listening (metrics, web page, API)', { address: `${daemon.http.address.host}:${daemon.http.address.port}` });
      }
      if (!daemon.once) daemon.applySchedules();
      daemon.history.addEvent({ kind: 'daemon', message: `duckvisord started (pid ${process.pid}, config ${config.file})` });
      daemon.abandonStaleCycles();
      daemon.pruneHistory();
      daemon.pruneTimer = setInterval(() => daemon!.pruneHistory(), pruneIntervalMs);
      daemon.pruneTimer.unref();
      // Autostart jobs pull in their dependencies (even ones that are not autostart themselves): a dependent
      // only runs after its dependencies succeeded in the same cycle, so they must be part of it.
      const autostart = withDependencies(config.jobs, [...config.jobs.values()].filter((job) => job.autostart).map((job) => job.name));
      if (daemon.once) {
        daemon.onceJobs = autostart;
        if (autostart.size > 0) daemon.onceCycle = daemon.startCycle('once', null, autostart).id;
        daemon.checkOnceDone();
      } else if (hasDependencies(config.jobs, autostart)) {
        daemon.startCycle('autostart', null, autostart);
      } else {
        for (const name of autostart) {
          if (!daemon.jobHasPendingRun(name)) daemon.scheduler.enqueueStart(name, 'autostart');
        }
      }
      daemon.scheduler.poke();
      return daemon;
    } catch (error) {
      await daemon?.control?.close();
      history?.close();
      lock.release();
      throw error;
    }
  }

  // ---------------------------------------------------------------- control API

  status(): StatusView {
    const now = Date.now();
    const latest = new Map(this.history.latestRuns().map((row) => [row.job, row]));
    const queuedByJob = new Map<string, RunRow>();
    for (const entry of this.scheduler.pending()) {
      if (!queuedByJob.has(entry.job)) {
        const row = this.history.getRun(entry.run_id);
        if (row) queuedByJob.set(entry.job, row);
      }
    }
    const names = new Set<string>([...this.config.jobs.keys(), ...[...this.live.values()].map((run) => run.job.name)]);
    const waiting = new Map<string, { cycle: string; for: string[] }>();
    for (const cycle of this.openCycles.values()) {
      for (const [job, dependencies] of this.planFor(cycle).waiting) if (!waiting.has(job)) waiting.set(job, { cycle: cycle.id, for: dependencies });
    }
    const jobs: JobStatus[] = [];
    for (const name of [...names].sort()) {
      const job = this.config.jobs.get(name) ?? [...this.live.values()].find((run) => run.job.name === name)!.job;
      const liveRun = [...this.live.values()].find((run) => run.job.name === name);
      const queued = queuedByJob.get(name);
      // Show the live run, else the latest run that actually ran; a waiting start/retry goes in `queued`.
      let shown = liveRun ? this.history.getRun(liveRun.id) : latest.get(name);
      if (!liveRun && shown?.state === 'queued') shown = this.history.listRuns({ job: name, limit: 20 }).find((r) => r.state !== 'queued') ?? shown;
      const { rate, eta } = liveRun ? this.rateAndEta(liveRun, now) : { rate: null, eta: null };
      jobs.push({
        job: name,
        kind: job.command ? 'command' : 'extractor',
        autostart: job.autostart,
        run: shown ? runView(shown) : null,
        queued: queued && queued.id !== shown?.id ? runView(queued) : null,
        rss_limit_bytes: job.limits.rss ?? null,
        swap_limit_bytes: job.limits.swap ?? null,
        rate,
        eta_ms: eta,
        uptime_ms: liveRun ? now - liveRun.startedAt : null,
        rss_bytes: liveRun?.lastSample?.rss ?? null,
        swap_bytes: liveRun?.lastSample?.swap ?? null,
        in_config: this.config.jobs.has(name),
        schedule: job.schedule ?? null,
        next_scheduled_at: this.schedules.nextRun(name)?.toISOString() ?? null,
        after: [...job.after],
        cycle: waiting.get(name)?.cycle ?? null,
        waiting_for: waiting.get(name)?.for ?? null,
      });
    }
    return {
      daemon: {
        pid: process.pid,
        started_at: isoTime(this.startedAt)!,
        config_file: this.config.file,
        state_dir: this.config.state_dir,
        concurrency: this.config.concurrency,
        live: this.live.size,
        queued: this.scheduler.pending().length,
        shutting_down: this.shuttingDown,
      },
      jobs,
    };
  }

  startJob(name: string): RunView {
    this.requireJob(name);
    if (this.shuttingDown) throw new ControlError(409, 'the daemon is shutting down; no new runs are started');
    const liveRun = [...this.live.values()].find((run) => run.job.name === name);
    if (liveRun) throw new ControlError(409, `job '${name}' is already ${liveRun.phase} as run ${liveRun.id}; stop it first or use restart`);
    const queued = this.scheduler.pending().find((entry) => entry.job === name);
    if (queued) {
      // A start request pulls a waiting retry forward instead of starting a second chain.
      this.history.enqueue(queued.run_id, name, Date.now());
      this.history.addEvent({ runId: queued.run_id, job: name, kind: 'state', message: 'start requested: queued run moved to now' });
      this.scheduler.poke();
      return runView(this.history.getRun(queued.run_id)!);
    }
    return runView(this.scheduler.enqueueStart(name, 'start requested'));
  }

  /**
   * A start request. Plain: queued at once, even when the job's dependencies have not succeeded in its current
   * cycle (an explicit operator request), with a warning that says so. `withDeps`: a new cycle that runs the
   * job's dependencies (transitively) first, then the job.
   */
  start(name: string, options: { withDeps: boolean }): StartResult {
    if (!options.withDeps) {
      const run = this.startJob(name);
      const warning = this.dependencyWarning(name);
      if (warning) this.history.addEvent({ runId: run.id, job: name, kind: 'dependency_warning', message: warning });
      return { run, cycle: null, warning };
    }
    this.requireJob(name);
    if (this.shuttingDown) throw new ControlError(409, 'the daemon is shutting down; no new runs are started');
    const liveRun = [...this.live.values()].find((run) => run.job.name === name);
    if (liveRun) throw new ControlError(409, `job '${name}' is already ${liveRun.phase} as run ${liveRun.id}; stop it first or use restart`);
    const cycle = this.startCycle('with-deps', name, withDependencies(this.config.jobs, [name]));
    const view = this.cycle(cycle.id);
    return { run: view.members.find((member) => member.job === name)?.run ?? null, cycle: view, warning: null };
  }

  cycle(id: string): CycleView {
    const cycle = this.openCycles.get(id) ?? this.history.getCycle(id);
    if (!cycle) throw new ControlError(404, `no cycle with id '${id}'`);
    const plan = this.openCycles.has(id) ? this.planFor(cycle) : null;
    const latest = new Map(this.history.cycleRuns(id).map((run) => [run.job, run]));
    return {
      id: cycle.id,
      kind: cycle.kind,
      root: cycle.root,
      started_at: isoTime(cycle.started_at)!,
      ended_at: isoTime(cycle.ended_at),
      outcome: cycle.outcome,
      members: cycle.jobs.map((job) => {
        const run = latest.get(job);
        return { job, after: this.dependenciesOf(job).filter((d) => cycle.jobs.includes(d)), run: run ? runView(run) : null, waiting_for: plan?.waiting.get(job) ?? null };
      }),
    };
  }

  async stopJob(name: string): Promise<RunView[]> {
    if (!this.config.jobs.has(name) && ![...this.live.values()].some((run) => run.job.name === name)) this.requireJob(name);
    const stopped: RunView[] = [];
    for (const row of this.scheduler.takeQueued(name)) {
      this.endRun(row.id, { state: 'killed', reason: 'operator', detail: 'cancelled before it started' }, 'killed (operator): cancelled before start');
      stopped.push(runView(this.history.getRun(row.id)!));
    }
    for (const cycle of [...this.openCycles.values()]) {
      if (!this.planFor(cycle).waiting.has(name)) continue;
      // Waiting for its dependencies: it will not run in this cycle, and neither will what depends on it.
      const now = Date.now();
      const id = newRunId(name, now);
      const detail = `cancelled by operator while waiting for its dependencies in cycle ${cycle.id}`;
      this.history.transaction(() => {
        this.history.createRun({ id, job: name, attempt: 1, chain_id: id, state: 'skipped', reason: 'operator', detail, queued_at: now, ended_at: now, cycle_id: cycle.id });
        this.history.addEvent({ runId: id, job: name, kind: 'state', message: `skipped: ${detail}` });
      });
      stopped.push(runView(this.history.getRun(id)!));
      this.advanceCycles();
    }
    const liveRuns = [...this.live.values()].filter((run) => run.job.name === name);
    if (liveRuns.length === 0 && stopped.length === 0) throw new ControlError(409, `job '${name}' has no live, queued or waiting run to stop`);
    for (const run of liveRuns) stopped.push(runView(await this.stopLive(run, 'operator', 'stopped by operator', false)));
    return stopped;
  }

  async stopRun(runId: string): Promise<RunView> {
    const liveRun = this.live.get(runId);
    if (liveRun) return runView(await this.stopLive(liveRun, 'operator', 'stopped by operator', false));
    const row = this.history.getRun(runId);
    if (!row) throw new ControlError(404, `no run with id '${runId}'`);
    if (row.state === 'queued') {
      this.history.dequeue(runId);
      this.endRun(runId, { state: 'killed', reason: 'operator', detail: 'cancelled before it started' }, 'killed (operator): cancelled before start');
      return runView(this.history.getRun(runId)!);
    }
    throw new ControlError(409, `run '${runId}' is not live (state ${row.state})`);
  }

  async restartJob(name: string): Promise<RunView> {
    this.requireJob(name);
    for (const row of this.scheduler.takeQueued(name)) {
      this.endRun(row.id, { state: 'killed', reason: 'operator', detail: 'replaced by restart' }, 'killed (operator): replaced by restart');
    }
    for (const run of [...this.live.values()].filter((r) => r.job.name === name)) {
      await this.stopLive(run, 'operator', 'restarted by operator', false);
    }
    return this.startJob(name);
  }

  listRuns(filter: RunFilter): RunView[] {
    return this.history.listRuns(filter).map(runView);
  }

  runDetail(runId: string): RunDetail {
    const row = this.history.getRun(runId);
    if (!row) throw new ControlError(404, `no run with id '${runId}'`);
    return {
      run: runView(row),
      samples: this.history.samples(runId),
      events: this.history.events(runId, 200).map((event) => ({ ...event, at: isoTime(event.at)! })),
    };
  }

  runLog(runId: string): { file: string | null; finished: () => boolean } {
    const row = this.history.getRun(runId);
    if (!row) throw new ControlError(404, `no run with id '${runId}'`);
    return {
      file: row.log_path,
      finished: () => {
        const current = this.history.getRun(runId);
        return !current || this.closed || (terminalStates.has(current.state) && !this.live.has(runId)) || (current.state === 'queued' && this.shuttingDown);
      },
    };
  }

  reload(): { changes: string[]; file: string } {
    let next: DaemonConfig;
    try {
      next = loadConfig(this.config.file);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.log.error('reload refused: the configuration is invalid; keeping the running one', { error: message });
      this.history.addEvent({ kind: 'reload_refused', message });
      throw new ControlError(422, `reload refused, the running configuration is unchanged:\n${message}`);
    }
    const changes = diffConfigs(this.config, next);
    const fixed: string[] = [];
    if (next.state_dir !== this.config.state_dir) fixed.push('state_dir');
    if (next.control.socket !== this.config.control.socket) fixed.push('control.socket');
    if (fixed.length > 0) {
      throw new ControlError(422, `reload refused: ${fixed.join(' and ')} cannot change while the daemon runs; restart duckvisord to apply`);
    }
    this.config = next;
    this.alerts.setConfig(next.alerts);
    if (!this.once) this.applySchedules();
    for (const name of [...this.live.values()].map((run) => run.job.name)) if (!next.jobs.has(name)) this.log.warn(`job '${name}' was removed from the config; its live run continues`);
    this.history.addEvent({ kind: 'reload', message: changes.length ? changes.join('\n') : 'no changes', data: { changes } });
    this.log.info(`configuration reloaded: ${changes.length} change(s)`, { changes: changes.length ? changes : undefined });
    this.scheduler.poke();
    return { changes, file: this.config.file };
  }

  shutdown(): void {
    void this.stopAll();
  }

  // ---------------------------------------------------------------- shutdown

  /** Graceful: stop every live run with its grace (runs end `interrupted`), close the socket, release the lock. */
  stopAll(): Promise<void> {
    if (this.shutdownPromise) return this.shutdownPromise;
    this.shuttingDown = true;
    this.onStopping();
    this.scheduler.stop();
    this.log.info(`shutting down: stopping ${this.live.size} live run(s)`);
    this.shutdownPromise = (async () => {
      const endings = [...this.live.values()].map((run) => this.stopLive(run, 'operator', 'daemon shutdown', true));
      this.publishQueue.length = 0;
      await Promise.all(endings);
      await this.close();
    })();
    return this.shutdownPromise;
  }

  /** Forceful (second signal): SIGKILL every live process group now. */
  forceKill(): void {
    for (const run of this.live.values()) {
      for (const handle of [run.handle, run.publisher]) {
        if (handle?.pid) {
          try {
            process.kill(-handle.pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
    }
  }

  /** Releases everything without stopping runs (used after the runs have ended). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = undefined;
    this.scheduler.stop();
    this.schedules.stopAll();
    await this.alerts.drain(5000);
    this.web?.close();
    await this.http?.close();
    this.history.addEvent({ kind: 'daemon', message: `duckvisord stopped (pid ${process.pid})` });
    const summary = this.onceSummary();
    await this.control?.close();
    this.historyOpen = false;
    this.history.close();
    this.lock.release();
    this.resolveFinished(summary);
  }

  // ---------------------------------------------------------------- run lifecycle

  private launch(row: RunRow): void {
    const job = this.config.jobs.get(row.job);
    if (!job) {
      this.endRun(row.id, { state: 'failed', reason: 'config', detail: `job '${row.job}' is no longer in the configuration` }, 'failed: job removed');
      return;
    }
    let resolveEnded!: (row: RunRow) => void;
    const ended = new Promise<RunRow>((resolve) => (resolveEnded = resolve));
    const liveRun: LiveRun = {
      id: row.id,
      job,
      phase: 'starting',
      handle: null,
      publisher: null,
      startedAt: Date.now(),
      progressPoints: [],
      progress: null,
      lastProgressWrite: 0,
      progressTimer: undefined,
      lastSample: null,
      persisted: newPersistedMarks(),
      lastSampleStored: false,
      stop: null,
      kill: null,
      lastError: null,
      ended,
      resolveEnded,
      log: this.log.child({ job: job.name, run: row.id }),
    };
    this.live.set(row.id, liveRun);
    const paths = this.runPaths(job.name, row.id, row.chain_id);
    mkdirSync(path.dirname(paths.log_path), { recursive: true });
    mkdirSync(path.dirname(paths.staging_path), { recursive: true });
    this.history.updateRunWithEvent(
      row.id,
      { state: 'starting', started_at: liveRun.startedAt, ...paths },
      { runId: row.id, job: job.name, kind: 'state', message: `starting attempt ${row.attempt}` },
    );
    let spec: RunSpec;
    try {
      spec = this.buildSpec(job, row, paths);
    } catch (error) {
      this.live.delete(row.id);
      this.endRun(row.id, { state: 'failed', reason: 'crash', detail: `could not build the run: ${(error as Error).message}` }, 'failed: could not start');
      resolveEnded(this.history.getRun(row.id)!);
      return;
    }
    liveRun.log.info(`starting attempt ${row.attempt}`, { argv: spec.argv.join(' ') });
    this.attach(liveRun, spec, row);
  }

  /** Starts (or adopts) the process layer for a live run and wires its outcome. */
  private attach(liveRun: LiveRun, spec: RunSpec, row: RunRow): void {
    const handle = this.startRunImpl(spec, this.observerFor(liveRun, false));
    liveRun.handle = handle;
    handle.done.then(
      (outcome) => this.onRunDone(liveRun, row, outcome),
      (error: unknown) => this.onRunDone(liveRun, row, crashOutcome(`process layer failed: ${String(error)}`)),
    );
  }

  private buildSpec(job: JobConfig, row: RunRow, paths: { staging_path: string; log_path: string }): RunSpec {
    const argv = job.command ? [...job.command] : [process.execPath, compiledPath('extractors/run-extractor.ts'), job.extractor!];
    const inherited = { ...this.childBaseEnv(), ...job.env };
    const env = job.command ? inherited : extractorProcessEnv(inherited, job.extractor!);
    Object.assign(env, {
      [childEnv.runId]: row.id,
      [childEnv.job]: job.name,
      [childEnv.attempt]: String(row.attempt),
      [childEnv.protocol]: '1',
      [childEnv.staging]: paths.staging_path,
      [childEnv.options]: JSON.stringify(job.options ?? {}),
      [childEnv.heartbeatTimeout]: String(job.heartbeat_timeout),
      [childEnv.stateDir]: this.config.state_dir,
      [childEnv.warehouse]: this.config.warehouse,
    });
    if (job.limits.rss !== undefined) env[childEnv.rssLimit] = String(job.limits.rss);
    return {
      runId: row.id,
      job,
      attempt: row.attempt,
      argv,
      env,
      cwd: job.cwd ?? path.dirname(this.config.file),
      logFile: paths.log_path,
      ipc: job.heartbeat === 'ipc',
      watchPaths: [this.config.state_dir, path.dirname(this.config.warehouse)],
    };
  }

  private childBaseEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(this.env)) if (value !== undefined) env[key] = value;
    for (const key of daemonOnlyEnv) delete env[key];
    return env;
  }

  private runPaths(job: string, runId: string, chainId: string): { staging_path: string; log_path: string } {
    return {
      staging_path: path.join(this.config.state_dir, 'staging', safeName(job), `${chainId}.duckdb`),
      log_path: path.join(this.config.state_dir, 'logs', safeName(job), `${runId}.log`),
    };
  }

  /** Persists every report of the process layer; a failing write is logged, never thrown into run.ts. */
  private observerFor(liveRun: LiveRun, publisher: boolean): RunObserver {
    const runId = liveRun.id;
    const job = liveRun.job.name;
    const guard = (what: string, work: () => void) => {
      try {
        if (!this.closed) work();
      } catch (error) {
        liveRun.log.error(`could not record ${what}`, { error: (error as Error).message });
      }
    };
    const prefix = publisher ? 'publisher: ' : '';
    return {
      started: (pid, startTime) =>
        guard('start', () => {
          if (publisher) {
            this.history.updateRunWithEvent(runId, { pid, pid_start_time: startTime }, { runId, job, kind: 'publisher', message: `publisher started (pid ${pid})` });
            return;
          }
          liveRun.phase = 'running';
          this.emitStatus();
          this.history.updateRunWithEvent(runId, { state: 'running', pid, pid_start_time: startTime }, { runId, job, kind: 'state', message: `running (pid ${pid})` });
        }),
      // Called for every live run at every tick: no closure per call (unlike guard), nothing allocated.
      sample: (sample) => {
        if (publisher || this.closed) return;
        try {
          liveRun.lastSample = sample;
          this.metrics.recordSample(job, sample, liveRun.job.limits);
          // The policy saw this sample already; history keeps one a second (one in five when idle) plus every telling one.
          liveRun.lastSampleStored = shouldPersist(liveRun.persisted, sample, liveRun.job, liveRun.progress?.done ?? null);
          if (liveRun.lastSampleStored) this.history.addSample(runId, sample, liveRun.progress?.done ?? null);
          else this.history.notePeaks(runId, sample);
        } catch (error) {
          liveRun.log.error('could not record sample', { error: (error as Error).message });
        }
      },
      progress: (progress) =>
        guard('progress', () => {
          if (publisher) return;
          liveRun.progress = progress;
          const now = Date.now();
          liveRun.progressPoints.push({ at: now, done: progress.done });
          while (liveRun.progressPoints.length > 2 && liveRun.progressPoints[0]!.at < now - rateWindowMs) liveRun.progressPoints.shift();
          if (liveRun.progressPoints.length > 1000) liveRun.progressPoints.splice(0, liveRun.progressPoints.length - 1000);
          if (now - liveRun.lastProgressWrite >= progressWriteIntervalMs) this.writeProgress(liveRun);
          else if (!liveRun.progressTimer) {
            liveRun.progressTimer = setTimeout(() => {
              liveRun.progressTimer = undefined;
              guard('progress', () => this.writeProgress(liveRun));
            }, progressWriteIntervalMs);
          }
        }),
      message: (message) =>
        guard('message', () => {
          if (message.type === 'hello') {
            this.history.addEvent({ runId, job, kind: 'hello', message: `${prefix}hello: extractor ${message.extractor}, protocol ${message.protocol}, pid ${message.pid}` });
          } else if (message.type === 'log') {
            if (!publisher && message.level === 'error') liveRun.lastError = message.msg;
            if (publisher && message.level === 'warn') this.history.updateRun(runId, { status_note: message.msg });
            if (message.level !== 'debug') this.history.addEvent({ runId, job, kind: 'log', message: `${prefix}${message.level}: ${message.msg}` });
          } else if (message.type === 'ready') {
            this.history.addEvent({ runId, job, kind: 'ready', message: `${prefix}ready: ${message.tables.length} table(s), ${message.rows} row(s), validation ${message.validation.ok ? 'ok' : 'FAILED'}` });
          }
        }),
      badMessage: (error) => guard('bad message', () => this.history.countBadMessage(runId, `${prefix}${error}`, job)),
      warning: (kind, measured, limit) =>
        guard('warning', () => {
          this.history.addEvent({ runId, job, kind: 'warning', message: `${prefix}${kind} at ${Math.round((measured / limit) * 100)}% of its limit`, measured, limit, data: { reason: kind } });
          liveRun.log.warn(`${kind} warning`, { measured, limit });
          this.alert(kind === 'stalled' ? 'stalled_warning' : 'warning', liveRun, { reason: kind, measured, limit, detail: `${kind} at ${Math.round((measured / limit) * 100)}% of its limit` });
        }),
      killing: (reason, measured, limit, detail) =>
        guard('kill', () => {
          liveRun.kill = { measured, limit };
          this.history.addEvent({ runId, job, kind: 'kill', message: `${prefix}killing (${reason}): ${detail}`, measured, limit, data: { reason } });
          liveRun.log.warn(`${prefix}killing (${reason}): ${detail}`, { measured: measured ?? undefined, limit: limit ?? undefined });
        }),
      diagnostics: (text) => guard('diagnostics', () => this.history.addEvent({ runId, job, kind: 'diagnostics', message: `${prefix}${text}` })),
    };
  }

  private writeProgress(liveRun: LiveRun): void {
    if (!liveRun.progress || this.closed) return;
    liveRun.lastProgressWrite = Date.now();
    const p = liveRun.progress;
    const update: RunUpdate = { progress_done: p.done, progress_total: p.total ?? null, progress_unit: p.unit };
    if (p.rows !== undefined) update.rows_written = p.rows;
    this.history.updateRun(liveRun.id, update);
  }

  private rateAndEta(liveRun: LiveRun, now: number): { rate: number | null; eta: number | null } {
    const points = liveRun.progressPoints.filter((p) => p.at >= now - rateWindowMs);
    if (points.length < 2) return { rate: null, eta: null };
    const first = points[0]!;
    const last = points.at(-1)!;
    const seconds = (last.at - first.at) / 1000;
    if (seconds <= 0) return { rate: null, eta: null };
    const rate = (last.done - first.done) / seconds;
    const total = liveRun.progress?.total;
    const eta = rate > 0 && total !== undefined ? Math.max(0, ((total - last.done) / rate) * 1000) : null;
    return { rate, eta };
  }

  private onRunDone(liveRun: LiveRun, row: RunRow, outcome: RunOutcome): void {
    if (liveRun.progressTimer) clearTimeout(liveRun.progressTimer);
    if (this.closed) return;
    try {
      this.writeProgress(liveRun);
      const base: RunUpdate = {
        exit_code: outcome.exitCode,
        signal: outcome.signal,
        peak_rss_bytes: Math.max(outcome.peakRss, this.history.getRun(liveRun.id)?.peak_rss_bytes ?? 0),
        peak_swap_bytes: Math.max(outcome.peakSwap, this.history.getRun(liveRun.id)?.peak_swap_bytes ?? 0),
      };
      if (outcome.progress) {
        base.progress_done = outcome.progress.done;
        base.progress_total = outcome.progress.total ?? null;
        base.progress_unit = outcome.progress.unit;
        if (outcome.progress.rows !== undefined) base.rows_written = outcome.progress.rows;
      }
      if (outcome.survivors.length > 0) {
        this.history.addEvent({ runId: row.id, job: row.job, kind: 'survivors', message: `processes survived the stop sequence: ${outcome.survivors.join(', ')}`, data: { pids: outcome.survivors } });
      }
      if (liveRun.stop?.shutdown) {
        this.finishLive(liveRun, { ...base, state: 'interrupted', reason: 'shutdown', detail: 'daemon shutdown' });
        return;
      }
      if (outcome.state === 'succeeded') {
        const ready = outcome.ready;
        if (ready) {
          const result = { tables: ready.tables, rows: ready.rows, validation: ready.validation, skipped: ready.skipped ?? [] };
          if (!ready.validation.ok) {
            const detail = `output validation failed: ${ready.validation.problems.join('; ') || 'no details given'}`;
            this.finishLive(liveRun, { ...base, state: 'failed', reason: 'validation', detail, rows_written: ready.rows, result_json: JSON.stringify(result) });
            return;
          }
          liveRun.phase = 'publishing';
          this.history.updateRunWithEvent(
            row.id,
            { ...base, state: 'publishing', rows_written: ready.rows, result_json: JSON.stringify(result) },
            { runId: row.id, job: row.job, kind: 'state', message: `publishing ${ready.tables.length} table(s) (${ready.rows} rows)` },
          );
          this.publishQueue.push(liveRun);
          this.nextPublish();
          this.scheduler.poke(); // the extractor's slot is free
          return;
        }
        if (liveRun.job.extractor) {
          this.finishLive(liveRun, { ...base, state: 'failed', reason: 'protocol', detail: "the extractor exited 0 without sending 'ready'; nothing was published" });
          return;
        }
        this.finishLive(liveRun, { ...base, state: 'succeeded', reason: null, detail: outcome.detail });
        return;
      }
      if (outcome.state === 'failed' && outcome.reason === 'crash' && outcome.exitCode === EXIT_VALIDATION_FAILED) {
        const why = liveRun.lastError ?? `exit code ${EXIT_VALIDATION_FAILED} (EX_DATAERR): the job reported that its output failed validation`;
        this.finishLive(liveRun, { ...base, state: 'failed', reason: 'validation', detail: why });
        return;
      }
      this.finishLive(liveRun, { ...base, state: outcome.state, reason: outcome.reason, detail: outcome.detail ?? liveRun.stop?.detail ?? null });
    } catch (error) {
      liveRun.log.error('could not record the end of a run', { error: (error as Error).message });
      this.live.delete(liveRun.id);
      liveRun.resolveEnded(row);
    }
  }

  private nextPublish(): void {
    if (this.publishing || this.shuttingDown) return;
    const liveRun = this.publishQueue.shift();
    if (!liveRun) return;
    this.publishing = liveRun;
    const row = this.history.getRun(liveRun.id)!;
    const result = JSON.parse(row.result_json ?? '{}') as { tables?: string[] };
    const job: JobConfig = { ...liveRun.job, heartbeat: 'ipc', stall_timeout: publisherStallTimeoutMs, max_runtime: 0, retries: { ...liveRun.job.retries, max: 0 } };
    const env = this.childBaseEnv();
    Object.assign(env, {
      DUCKVISOR_STAGING: row.staging_path ?? '',
      DUCKVISOR_WAREHOUSE: this.config.warehouse,
      DUCKVISOR_JOB: row.job,
      DUCKVISOR_RUN_ID: row.id,
      DUCKVISOR_TABLES: JSON.stringify(result.tables ?? []),
      [childEnv.protocol]: '1',
      [childEnv.attempt]: String(row.attempt),
      [childEnv.heartbeatTimeout]: String(job.heartbeat_timeout),
      [childEnv.stateDir]: this.config.state_dir,
    });
    const logFile = (row.log_path ?? path.join(this.config.state_dir, 'logs', safeName(row.job), `${row.id}.log`)).replace(/\.log$/, '.publish.log');
    const spec: RunSpec = {
      runId: `${row.id}.publish`,
      job,
      attempt: row.attempt,
      argv: [process.execPath, compiledPath('extractors/publisher.ts')],
      env,
      cwd: path.dirname(this.config.file),
      logFile,
      ipc: true,
      watchPaths: [this.config.state_dir, path.dirname(this.config.warehouse)],
    };
    liveRun.log.info('publishing', { tables: result.tables?.join(',') });
    const handle = this.startRunImpl(spec, this.observerFor(liveRun, true));
    liveRun.publisher = handle;
    handle.done.then(
      (outcome) => this.onPublishDone(liveRun, outcome),
      (error: unknown) => this.onPublishDone(liveRun, crashOutcome(`process layer failed: ${String(error)}`)),
    );
  }

  private onPublishDone(liveRun: LiveRun, outcome: RunOutcome): void {
    this.publishing = null;
    liveRun.publisher = null;
    if (this.closed) return;
    try {
      if (liveRun.stop?.shutdown) {
        this.finishLive(liveRun, { state: 'interrupted', reason: 'shutdown', detail: 'daemon shutdown during publish; staging kept', status_note: null });
      } else if (outcome.state === 'succeeded') {
        this.finishLive(liveRun, { state: 'succeeded', reason: null, detail: null, status_note: null });
      } else if (outcome.state === 'killed') {
        this.finishLive(liveRun, { state: 'killed', reason: outcome.reason, detail: `publisher killed: ${outcome.detail ?? outcome.reason}; staging kept`, status_note: null });
      } else {
        const why = outcome.detail ?? (outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.exitCode}`);
        this.finishLive(liveRun, { state: 'failed', reason: 'crash', detail: `publish failed: ${why}; staging kept for the retry`, status_note: null });
      }
    } finally {
      this.nextPublish();
    }
  }

  /** Stops a live run (or its publisher) and resolves with the final row. */
  private stopLive(liveRun: LiveRun, reason: KillReason, detail: string, shutdown: boolean): Promise<RunRow> {
    liveRun.stop ??= { reason, detail, shutdown };
    if (shutdown) liveRun.stop.shutdown = true;
    this.history.addEvent({ runId: liveRun.id, job: liveRun.job.name, kind: 'stop', message: `stop requested: ${detail}`, data: { reason } });
    const queuedForPublish = this.publishQueue.indexOf(liveRun);
    if (queuedForPublish >= 0) {
      this.publishQueue.splice(queuedForPublish, 1);
      const state: RunState = shutdown ? 'interrupted' : 'killed';
      this.finishLive(liveRun, { state, reason: shutdown ? 'shutdown' : reason, detail: `${detail} before publish; staging kept` });
    } else if (liveRun.publisher) {
      liveRun.publisher.stop(reason, detail);
    } else if (liveRun.handle) {
      liveRun.handle.stop(reason, detail);
    }
    return liveRun.ended;
  }

  /** Writes a live run's terminal state, schedules a retry when the policy allows, and frees its slot. */
  private finishLive(liveRun: LiveRun, update: RunUpdate & { state: RunState }): void {
    this.live.delete(liveRun.id);
    try {
      if (liveRun.lastSample && !liveRun.lastSampleStored) {
        this.history.addSample(liveRun.id, liveRun.lastSample, liveRun.progress?.done ?? null);
        liveRun.lastSampleStored = true;
      }
      this.history.releaseSamples(liveRun.id);
    } catch (error) {
      liveRun.log.error('could not record the last samples', { error: (error as Error).message });
    }
    const row = this.endRun(liveRun.id, update, describeEnd(update));
    liveRun.log[update.state === 'succeeded' ? 'info' : 'warn'](describeEnd(update));
    if (![...this.live.values()].some((run) => run.job.name === liveRun.job.name)) this.metrics.clearJob(liveRun.job.name);
    const kinds: Partial<Record<RunState, AlertEventKind>> = { killed: 'killed', failed: 'failed', succeeded: 'succeeded', interrupted: 'interrupted' };
    const kind = kinds[row.state];
    if (kind) this.alert(kind, liveRun, { reason: row.reason, detail: row.detail, measured: liveRun.kill?.measured ?? null, limit: liveRun.kill?.limit ?? null });
    liveRun.resolveEnded(row);
    this.scheduler.poke();
    this.checkOnceDone();
  }

  /** Records a terminal state for any run (live or queued) and, when due, queues its retry. */
  private endRun(runId: string, update: RunUpdate & { state: RunState }, message: string): RunRow {
    const ended = { ...update, ended_at: Date.now() };
    this.history.updateRunWithEvent(runId, ended, { runId, job: this.history.getRun(runId)?.job ?? null, kind: 'state', message, data: { state: update.state, reason: update.reason ?? null } });
    const row = this.history.getRun(runId)!;
    this.metrics.recordRunEnd(row.job, row.state, row.reason);
    if (++this.endsSincePrune >= pruneEveryRuns) setImmediate(() => this.pruneHistory());
    this.maybeRetry(row);
    // After the retry is queued: a dependency with a retry to come keeps its dependents waiting.
    if (row.cycle_id !== null && this.openCycles.has(row.cycle_id)) this.advanceCycles();
    this.emitStatus();
    return this.history.getRun(runId)!;
  }

  private emitStatus(): void {
    const live = [...this.live.values()];
    const running = live.filter((run) => run.phase !== 'publishing').length;
    const publishing = live.length - running;
    const queued = this.scheduler.pending().length;
    this.metrics.setLive(live.length);
    this.metrics.setQueue(queued);
    this.onStatus(`${running} running, ${publishing} publishing, ${queued} queued`);
  }

  private maybeRetry(row: RunRow): void {
    // A validation failure is retried only when the policy names it (retry.ts leaves it out of the defaults).
    const reason: RetryReason | null = row.state === 'failed' && row.reason === 'validation' ? 'validation' : retryReasonFor(row.state, row.reason);
    if (!reason) return;
    const job = this.config.jobs.get(row.job);
    if (!job) return;
    const delay = retryDelay(job.retries, reason, row.attempt);
    if (delay === null) {
      if (job.retries.on.includes(reason)) {
        this.history.addEvent({ runId: row.id, job: row.job, kind: 'retries_exhausted', message: `no retry: ${row.attempt} attempt(s) made, retries.max is ${job.retries.max}` });
        this.alerts.dispatch('retries_exhausted', { ...this.alertPayloadFor(row), detail: `gave up after ${row.attempt} attempt(s): ${row.detail ?? row.state}` });
      }
      return;
    }
    this.scheduler.enqueueRetry(row, delay, reason);
  }

  // ---------------------------------------------------------------- history retention

  /**
   * Deletes finished runs beyond `history.keep_runs`/`keep_days` (with samples, events and log files), one
   * small batch per event-loop turn so sampling and the control API never wait long. Live, queued and
   * still-retrying runs are kept (History.pruneRuns). Runs at start, hourly, and every `pruneEveryRuns` ends.
   */
  pruneHistory(): void {
    if (this.pruning || this.closed) return;
    this.pruning = true;
    this.endsSincePrune = 0;
    const retention = this.config.history ?? historyDefaults;
    let total = 0;
    const step = (): void => {
      if (this.closed) {
        this.pruning = false;
        return;
      }
      let pruned;
      try {
        pruned = this.history.pruneRuns({ keepRuns: retention.keep_runs, keepDays: retention.keep_days });
      } catch (error) {
        this.pruning = false;
        this.log.error('could not prune the history', { error: (error as Error).message });
        return;
      }
      total += pruned.length;
      for (const run of pruned) {
        if (!run.log_path) continue;
        for (const file of [run.log_path, run.log_path.replace(/\.log$/, '.publish.log')]) rmSync(file, { force: true });
      }
      if (pruned.length > 0) {
        setImmediate(step);
        return;
      }
      this.pruning = false;
      if (total > 0) this.log.info('history pruned', { runs: total, keep_runs: retention.keep_runs, keep_days: retention.keep_days });
    };
    step();
  }

  // ---------------------------------------------------------------- crash recovery

  /** Runs a dead daemon left starting/running/publishing: kill (or adopt) what is alive, mark interrupted, retry. */
  private async recover(): Promise<void> {
    const leftovers = this.history.runsInStates(['starting', 'running', 'publishing']);
    for (const row of leftovers) {
      const job = this.config.jobs.get(row.job);
      const alive = row.pid !== null && row.pid_start_time !== null && isSameProcessAlive(row.pid, row.pid_start_time);
      if (alive && this.config.recovery === 'adopt' && row.state === 'running' && job) {
        this.adopt(row, job);
        continue;
      }
      let detail = `the daemon stopped while the run was ${row.state}`;
      // Even when the leader is gone, group members and setsid'd descendants may live on.
      const grace = job?.stop_grace ?? this.config.defaults.stop_grace;
      const result = row.pid !== null ? await killLeftoverRun(row.pid, row.pid_start_time ?? '', grace, row.id) : { found: [], survivors: [] };
      if (result.found.length > 0) {
        detail += `; killed its leftover processes (${result.found.join(', ')}) on restart`;
      } else {
        detail += '; no process of it was left';
      }
      this.history.addEvent({
        runId: row.id,
        job: row.job,
        kind: 'recovery',
        message: `${result.found.length} leftover process(es) of the crashed daemon's run killed${result.survivors.length ? `; SURVIVORS: ${result.survivors.join(', ')}` : ''}`,
        data: { leader_alive: alive, found: result.found, survivors: result.survivors },
      });
      this.log.warn(`recovered run ${row.id} of job ${row.job}: interrupted`, { detail });
      this.endRun(row.id, { state: 'interrupted', reason: 'daemon_crash', detail, status_note: null }, `interrupted: ${detail}`);
    }
  }

  private adopt(row: RunRow, job: JobConfig): void {
    let resolveEnded!: (row: RunRow) => void;
    const ended = new Promise<RunRow>((resolve) => (resolveEnded = resolve));
    const liveRun: LiveRun = {
      id: row.id,
      job,
      phase: 'running',
      handle: null,
      publisher: null,
      startedAt: row.started_at ?? Date.now(),
      progressPoints: [],
      // The last progress the previous daemon stored, so the adopted run's samples go on carrying it.
      progress: row.progress_done === null ? null : { done: row.progress_done, ...(row.progress_total === null ? {} : { total: row.progress_total }), unit: row.progress_unit ?? 'items', advanced_at: Date.now() },
      lastProgressWrite: 0,
      progressTimer: undefined,
      lastSample: null,
      persisted: newPersistedMarks(),
      lastSampleStored: false,
      stop: null,
      kill: null,
      lastError: null,
      ended,
      resolveEnded,
      log: this.log.child({ job: job.name, run: row.id }),
    };
    this.live.set(row.id, liveRun);
    const paths = { staging_path: row.staging_path ?? '', log_path: row.log_path ?? this.runPaths(job.name, row.id, row.chain_id).log_path };
    const spec = { ...this.buildSpec(job, row, paths), ipc: false, adopt: { pid: row.pid!, startTime: row.pid_start_time! } };
    this.history.addEvent({ runId: row.id, job: job.name, kind: 'recovery', message: `adopted live process group ${row.pid} left by the previous daemon (no IPC channel now)` });
    this.log.warn(`adopted run ${row.id} of job ${job.name} (pid ${row.pid})`);
    this.attach(liveRun, spec, row);
  }

  // ---------------------------------------------------------------- helpers

  /** (Re)installs cron schedules from the current config; removed jobs lose theirs. */
  private applySchedules(): void {
    for (const job of this.config.jobs.values()) {
      try {
        this.schedules.set(job.name, job.schedule);
      } catch (error) {
        this.log.error(`schedule of job '${job.name}' not applied`, { error: (error as Error).message });
      }
    }
    for (const name of this.schedules.jobs()) if (!this.config.jobs.has(name)) this.schedules.set(name, undefined);
  }

  private alertPayloadFor(row: RunRow): AlertPayload {
    return {
      job: row.job,
      run: row.id,
      attempt: row.attempt,
      reason: row.reason,
      detail: row.detail,
      progress: row.progress_done === null ? null : { done: row.progress_done, total: row.progress_total, unit: row.progress_unit ?? 'items' },
      logTail: row.log_path ? lastLines(row.log_path, 20) : [],
    };
  }

  private alert(kind: AlertEventKind, liveRun: LiveRun, extra: Partial<AlertPayload>): void {
    try {
      const row = this.history.getRun(liveRun.id);
      if (!row) return;
      this.alerts.dispatch(kind, { ...this.alertPayloadFor(row), ...extra });
    } catch (error) {
      liveRun.log.error('could not dispatch an alert', { kind, error: (error as Error).message });
    }
  }

  private requireJob(name: string): JobConfig {
    const job = this.config.jobs.get(name);
    if (!job) {
      const known = [...this.config.jobs.keys()].sort();
      throw new ControlError(404, `unknown job '${name}'; known jobs: ${known.length ? known.join(', ') : '(none configured)'}`);
    }
    return job;
  }

  private jobHasPendingRun(name: string): boolean {
    return this.scheduler.pending().some((entry) => entry.job === name) || [...this.live.values()].some((run) => run.job.name === name);
  }

  private checkOnceDone(): void {
    if (!this.once || this.shuttingDown) return;
    if (this.live.size > 0 || this.publishQueue.length > 0 || this.publishing) return;
    if (this.scheduler.pending().length > 0) return;
    if (this.onceCycle !== null && this.openCycles.has(this.onceCycle)) {
      // Nothing is live or queued, so the plan must queue, skip or finish; never wait forever.
      this.advanceCycles();
      if (this.scheduler.pending().length > 0 || this.live.size > 0) return;
      const stuck = this.openCycles.get(this.onceCycle);
      if (stuck) {
        this.log.error(`cycle ${stuck.id} cannot make progress; ending it`);
        this.endCycle(stuck, 'failed');
      }
    }
    void this.close();
  }

  /** Each once-job's final run in the --once cycle (skipped ones included), in dependency order; ok only when all succeeded. */
  private onceSummary(): OnceSummary {
    const runs: RunView[] = [];
    if (this.onceCycle !== null) {
      const latest = new Map(this.history.cycleRuns(this.onceCycle).map((run) => [run.job, run]));
      for (const job of this.history.getCycle(this.onceCycle)?.jobs ?? []) {
        const run = latest.get(job);
        if (run) runs.push(runView(run));
      }
    }
    return { ok: runs.length === this.onceJobs.size && runs.every((run) => run.state === 'succeeded'), runs };
  }

  // ---------------------------------------------------------------- dependency cycles

  private dependenciesOf(job: string): string[] {
    return this.config.jobs.get(job)?.after ?? [];
  }

  private planFor(cycle: CycleRow): CyclePlan {
    return planCycle(cycle.jobs, (job) => this.dependenciesOf(job), this.history.cycleRuns(cycle.id));
  }

  /** True while `job` is a member of a cycle that has not finished. */
  private jobInOpenCycle(job: string): boolean {
    return [...this.openCycles.values()].some((cycle) => cycle.jobs.includes(job));
  }

  /**
   * Opens a cycle over `members` (dependencies included by the caller), takes over runs already waiting for
   * jobs without dependencies in it, and queues what can start. Refused when a member is still in another cycle.
   */
  private startCycle(kind: CycleKind, root: string | null, members: Set<string>): CycleRow {
    const order = dependencyOrder(this.config.jobs, members);
    for (const open of this.openCycles.values()) {
      const busy = order.filter((job) => open.jobs.includes(job));
      if (busy.length > 0) {
        throw new ControlError(409, `${busy.join(', ')} ${busy.length === 1 ? 'is' : 'are'} still part of cycle ${open.id} (${open.kind}${open.root ? ` of ${open.root}` : ''}); wait until it has finished`);
      }
    }
    const now = Date.now();
    const cycle: CycleRow = { id: newRunId(`cycle-${root ?? kind}`, now), kind, root, jobs: order, started_at: now, ended_at: null, outcome: null };
    const within = (job: string) => this.dependenciesOf(job).filter((dependency) => members.has(dependency));
    this.history.transaction(() => {
      this.history.createCycle(cycle);
      this.history.addEvent({ kind: 'cycle', message: `cycle ${cycle.id} (${kind}${root ? ` of ${root}` : ''}) started: ${order.join(' → ')}`, data: { cycle: cycle.id, kind, root, jobs: order } });
      for (const job of order) {
        const dependencies = within(job);
        const pending = this.scheduler.pending().filter((entry) => entry.job === job).map((entry) => entry.run_id);
        const liveRun = [...this.live.values()].find((run) => run.job.name === job);
        if (dependencies.length === 0) {
          // A run already waiting (a retry from before, or an adopted live run) stands for this job in the cycle.
          const adopt = pending[0] ?? liveRun?.id;
          if (adopt !== undefined) {
            this.history.updateRunWithEvent(adopt, { cycle_id: cycle.id }, { runId: adopt, job, kind: 'cycle', message: `run ${adopt} stands for ${job} in cycle ${cycle.id}` });
          }
          continue;
        }
        for (const runId of pending) {
          // It would start before its dependencies: the cycle runs the job after them instead.
          this.history.dequeue(runId);
          const detail = `replaced by cycle ${cycle.id}, which runs ${job} after ${dependencies.join(', ')}`;
          this.history.updateRunWithEvent(runId, { state: 'skipped', reason: 'superseded', detail, ended_at: now }, { runId, job, kind: 'state', message: `skipped: ${detail}` });
        }
      }
    });
    this.openCycles.set(cycle.id, cycle);
    this.advanceCycles();
    return this.openCycles.get(cycle.id) ?? this.history.getCycle(cycle.id)!;
  }

  /** Queues the jobs whose dependencies succeeded, skips those whose dependency failed, ends finished cycles. */
  private advanceCycles(): void {
    if (this.shuttingDown || this.closed) return;
    if (this.advancing) {
      // A queued run ended while queueing (e.g. it could not be built): go round once more.
      this.advanceAgain = true;
      return;
    }
    this.advancing = true;
    try {
      do {
        this.advanceAgain = false;
        for (const cycle of [...this.openCycles.values()]) this.advanceCycle(cycle);
      } while (this.advanceAgain && !this.shuttingDown);
    } finally {
      this.advancing = false;
    }
  }

  private advanceCycle(cycle: CycleRow): void {
    const plan = this.planFor(cycle);
    for (const skip of plan.skip) this.skipRun(cycle, skip.job, skip.detail);
    for (const start of plan.queue) {
      if (this.shuttingDown) return;
      this.scheduler.enqueueStart(start.job, `cycle ${cycle.id}: ${start.detail}`, cycle.id);
    }
    if (plan.finished) this.endCycle(cycle, plan.ok ? 'succeeded' : 'failed');
  }

  /** Records a run that never started because a dependency failed in its cycle. */
  private skipRun(cycle: CycleRow, job: string, detail: string): void {
    const now = Date.now();
    const id = newRunId(job, now);
    this.history.transaction(() => {
      this.history.createRun({ id, job, attempt: 1, chain_id: id, state: 'skipped', reason: 'dependency', detail, queued_at: now, ended_at: now, cycle_id: cycle.id });
      this.history.addEvent({ runId: id, job, kind: 'state', message: `skipped: ${detail}`, data: { state: 'skipped', reason: 'dependency', cycle: cycle.id } });
    });
    this.metrics.recordRunEnd(job, 'skipped', 'dependency');
    this.log.warn(`job ${job} skipped in cycle ${cycle.id}: ${detail}`);
  }

  private endCycle(cycle: CycleRow, outcome: 'succeeded' | 'failed'): void {
    this.openCycles.delete(cycle.id);
    const now = Date.now();
    this.history.endCycle(cycle.id, outcome, now);
    this.history.addEvent({ kind: 'cycle', message: `cycle ${cycle.id} ${outcome} after ${formatMs(now - cycle.started_at)}`, data: { cycle: cycle.id, outcome } });
  }

  /**
   * Cycles a previous daemon left open end `abandoned`: their runs that still wait in the queue run as plain
   * runs (or are taken over by this start's cycle); dependents that never queued are not started.
   */
  private abandonStaleCycles(): void {
    for (const cycle of this.history.openCycles()) {
      this.history.endCycle(cycle.id, 'abandoned');
      this.history.addEvent({ kind: 'cycle', message: `cycle ${cycle.id} abandoned: the daemon restarted before it finished`, data: { cycle: cycle.id, outcome: 'abandoned' } });
    }
  }

  /** A schedule tick: a job with dependents (or dependencies) starts a cycle; a lone job is just queued. */
  private scheduledStart(job: string): void {
    const members = withDependencies(this.config.jobs, withDependents(this.config.jobs, [job]));
    if (!hasDependencies(this.config.jobs, members)) {
      this.scheduler.enqueueStart(job, 'schedule');
      return;
    }
    try {
      this.startCycle('schedule', job, members);
    } catch (error) {
      this.history.addEvent({ job, kind: 'schedule_skip', message: `scheduled cycle skipped: ${(error as Error).message}` });
    }
  }

  /** Why a plain start runs without its dependencies having succeeded in the job's current cycle; null when they did. */
  private dependencyWarning(name: string): string | null {
    const dependencies = this.dependenciesOf(name);
    if (dependencies.length === 0) return null;
    const cycle = this.history.latestCycleWith(name);
    if (!cycle) {
      return `started without waiting for its dependencies: ${dependencies.join(', ')} ${dependencies.length === 1 ? 'has' : 'have'} not run in a cycle with ${name}; use start --with-deps to run them first`;
    }
    const latest = new Map(this.history.cycleRuns(cycle.id).map((run) => [run.job, run]));
    const missing: string[] = [];
    for (const dependency of dependencies) {
      const run = latest.get(dependency);
      if (run?.state === 'succeeded') continue;
      if (!run) missing.push(`${dependency} has not run`);
      else if (!terminalStates.has(run.state)) missing.push(`${dependency} is ${run.state}`);
      else missing.push(dependencyFailure(dependency, run).replace(/^dependency /, ''));
    }
    if (missing.length === 0) return null;
    const rerun = this.openCycles.has(cycle.id) && !latest.has(name) ? `; cycle ${cycle.id} still runs ${name} again once they succeed` : '';
    return `started without waiting for its dependencies (explicit start): ${missing.join(', ')} in its current cycle ${cycle.id}${rerun}; use start --with-deps to run them first`;
  }
}

/** The last `count` lines of a (log) file, reading at most its last 64 KiB. */
function lastLines(file: string, count: number): string[] {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return [];
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    return buffer.toString('utf8').split('\n').filter((line) => line !== '').slice(-count);
  } finally {
    closeSync(fd);
  }
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function describeEnd(update: RunUpdate & { state: RunState }): string {
  const reason = update.reason ? ` (${update.reason})` : '';
  return `${update.state}${reason}${update.detail ? `: ${update.detail}` : ''}`;
}

function crashOutcome(detail: string): RunOutcome {
  return { state: 'failed', reason: 'crash', detail, exitCode: null, signal: null, peakRss: 0, peakSwap: 0, progress: null, ready: null, badMessages: 0, survivors: [] };
}
