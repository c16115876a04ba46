// One run's processes from spawn (or adoption) to the confirmed death of the last one: sampling loop,
// policy, clocks, stop sequence, diagnostics and the outcome. The daemon calls startRun and listens.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildMessage, ReadyMessage } from '../extractors/sdk/protocol.js';
import { captureDiagnostics } from './diagnostics.js';
import { HeartbeatClock } from './heartbeat.js';
import { evaluatePolicy } from './policy.js';
import { RUN_ID_VARIABLE, processLiveness } from './proc.js';
import { ProcessTree, Sampler, samplingClock, samplingDelay, type SamplingSlot, type SamplingTarget } from './sample.js';
import { LogTail, spawnChild, type ChildExit, type SpawnedChild } from './spawn.js';
import { liveTreePids, stopProcessTree, sweepRunProcesses, type StopMode, type StopResult } from './stop.js';
import type { HeartbeatMode, KillReason, Progress, RunHandle, RunObserver, RunOutcome, RunSpec, Sample } from './types.js';

/** How long `done` waits for the child's IPC channel to close after the tree is dead before cutting it, ms. */
export const PIPE_DRAIN_MS = 2000;

/** Samples dropped at once when the policy window is trimmed. */
const SAMPLE_TRIM_BATCH = 32;
/** Most samples a run keeps in memory for the policy. */
const MAX_KEPT_SAMPLES = 10_000;

interface StopRecord {
  reason: KillReason;
  detail: string;
  /** Whether the stop started while the main process was still running (then the run counts as killed). */
  beforeExit: boolean;
}

// Observer methods are the daemon's code; a bug there must not stop a runaway from being killed.
function safely(call: () => void): void {
  try {
    call();
  } catch (error) {
    console.error('duckvisor: run observer threw:', error);
  }
}

class Run implements SamplingTarget {
  private readonly clock: HeartbeatClock;
  private readonly heartbeatMode: HeartbeatMode;
  private tree: ProcessTree | null = null;
  private sampler: Sampler | null = null;
  private child: SpawnedChild | null = null;
  /** The log read back for output lines of an adopted run (a spawned run's child reads its own). */
  private adoptedLog: LogTail | null = null;
  private finishing = false;
  private readonly samples: Sample[] = [];
  private readonly warned = new Set<KillReason>();
  private peakRss = 0;
  private peakSwap = 0;
  private badMessages = 0;
  private ready: ReadyMessage | null = null;
  private progress: Progress | null = null;
  private startedAt = Date.now();
  private slot: SamplingSlot | null = null;
  private leaderExit: ChildExit | null = null;
  private stopRecord: StopRecord | null = null;
  private stopping: Promise<StopResult> | null = null;
  private finished = false;
  private resolveDone!: (outcome: RunOutcome) => void;
  readonly done: Promise<RunOutcome>;

  constructor(
    private readonly spec: RunSpec,
    private readonly observer: RunObserver,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    const adopted = spec.adopt !== undefined;
    // Without a channel (adopted runs, or ipc disabled) there is nothing to hear heartbeats on.
    this.heartbeatMode = spec.job.heartbeat === 'ipc' && (adopted || !spec.ipc) ? 'none' : spec.job.heartbeat;
    this.clock = new HeartbeatClock(spec.job.progress_pattern || null);
  }

  get pid(): number | undefined {
    return this.tree?.pgid;
  }

  /** The DUCKVISOR_RUN_ID every process of this run carries (spawnChild sets it when the spec does not). */
  private get runIdMark(): string {
    return this.spec.env[RUN_ID_VARIABLE] ?? this.spec.runId;
  }

  private onOutputLine(line: string): void {
    const progress = this.clock.onStdoutLine(line, Date.now());
    if (progress) this.onProgress(progress);
  }

  /** Hands the output lines written since the last call to the progress clock. */
  private pollOutput(): void {
    if (this.child) this.child.pollOutput();
    else this.adoptedLog?.poll();
  }

  begin(): void {
    try {
      if (this.spec.adopt) this.adopt(this.spec.adopt.pid, this.spec.adopt.startTime);
      else this.spawn();
    } catch (error) {
      this.finishEarly(error instanceof Error ? error.message : String(error));
    }
  }

  private spawn(): void {
    const child = spawnChild(this.spec, {
      message: (message) => this.onMessage(message),
      badMessage: (error) => {
        this.badMessages++;
        safely(() => this.observer.badMessage(error));
      },
      stdoutLine: (line) => this.onOutputLine(line),
    });
    this.child = child;
    this.startedAt = Date.now();
    if (child.pid === undefined || child.startTime === null) {
      child.closeOutput();
      void child.exited.then((exit) => child.settled.then(() => this.finishEarly(`could not start ${JSON.stringify(this.spec.argv[0])}: ${exit.error ?? 'the process vanished at once'}`)));
      return;
    }
    this.watch(child.pid, child.startTime);
    void child.exited.then((exit) => this.onLeaderExit(exit));
  }

  private adopt(pid: number, startTime: string): void {
    if (processLiveness(pid, startTime) !== 'alive') {
      this.finishEarly(`adopted process ${pid} (start time ${startTime}) is no longer running`);
      return;
    }
    // The adopted child writes straight into its log file; its progress lines are read from the end on.
    try {
      this.adoptedLog = new LogTail(this.spec.logFile, (line) => this.onOutputLine(line));
    } catch {
      this.adoptedLog = null; // no log to read (deleted): resources and exit are still supervised
    }
    this.watch(pid, startTime);
  }

  private watch(pid: number, startTime: string): void {
    this.tree = new ProcessTree(pid, startTime);
    // The thrash rule reads the fault rate of every sample in its window: fault counts at every tick then.
    const { limits, thrash_window } = this.spec.job;
    this.tree.exactEveryTick = limits.majflt_rate !== undefined && limits.majflt_rate > 0 && thrash_window > 0;
    this.sampler = new Sampler(this.tree, this.spec.watchPaths);
    safely(() => this.observer.started(pid, startTime));
    const delay = this.sampleTick();
    if (delay >= 0) this.slot = samplingClock.add(this, delay);
  }

  private onMessage(message: ChildMessage): void {
    const progress = this.clock.onMessage(message, Date.now());
    if (message.type === 'ready') this.ready = message;
    safely(() => this.observer.message(message));
    if (progress) this.onProgress(progress);
  }

  private onProgress(progress: Progress): void {
    this.progress = progress;
    safely(() => this.observer.progress(progress));
  }

  /** One sample and policy decision; returns the delay to the next sample (negative once the run is over). Called by the shared sampling clock. */
  sampleTick(): number {
    if (this.finished || !this.sampler || !this.tree) return -1;
    this.pollOutput();
    const now = Date.now();
    const sample = this.sampler.sample(now);
    if (sample.rss > this.peakRss) this.peakRss = sample.rss;
    if (sample.swap > this.peakSwap) this.peakSwap = sample.swap;
    this.remember(sample);
    this.notifySample(sample);

    // Adopted processes are not our children: their exit shows up only in /proc.
    if (this.spec.adopt && !this.leaderExit && processLiveness(this.tree.pgid, this.tree.leaderStartTime) !== 'alive') {
      this.onLeaderExit({ exitCode: null, signal: null, error: null });
    }

    if (!this.stopRecord && !this.leaderExit) {
      const clocks = this.clock.state();
      const decision = evaluatePolicy(this.spec.job, {
        samples: this.samples,
        lastMessageAt: clocks.lastMessageAt,
        progress: clocks.progress,
        startedAt: this.startedAt,
        now,
        heartbeat: this.heartbeatMode,
        helloSeen: clocks.helloSeen,
        warned: this.warned,
      });
      if (decision.kind === 'warn') {
        this.warned.add(decision.reason);
        safely(() => this.observer.warning(decision.reason, decision.measured, decision.limit));
      } else if (decision.kind === 'kill') {
        this.beginStop(decision.reason, decision.detail, 'limit', decision.measured, decision.limit);
      }
    }
    return this.finished ? -1 : samplingDelay(this.spec.job, sample);
  }

  // Not `safely(() => ...)`: that would create a closure per sample of every run.
  private notifySample(sample: Sample): void {
    try {
      this.observer.sample(sample);
    } catch (error) {
      console.error('duckvisor: run observer threw:', error);
    }
  }

  // The policy reads only the latest sample, except the thrash rule, which needs every sample of its
  // window. Without that rule a run keeps two samples (overwritten in place), so samples die young and
  // are never promoted to the old generation, whose collections are the expensive ones. With it, the
  // window is trimmed in batches (older samples are harmless to the rule) instead of spliced per tick.
  private remember(sample: Sample): void {
    const samples = this.samples;
    const job = this.spec.job;
    if (!(job.limits.majflt_rate !== undefined && job.limits.majflt_rate > 0 && job.thrash_window > 0)) {
      if (samples.length < 2) {
        samples.push(sample);
      } else {
        samples[0] = samples[samples.length - 1]!;
        samples[1] = sample;
        if (samples.length > 2) samples.splice(2);
      }
      return;
    }
    samples.push(sample);
    const keep = Math.max(job.thrash_window, 4 * job.sample_interval) + 2 * job.sample_interval;
    const cutoff = sample.at - keep;
    if (samples.length > SAMPLE_TRIM_BATCH + 2 && samples[SAMPLE_TRIM_BATCH]!.at < cutoff) {
      let drop = SAMPLE_TRIM_BATCH;
      while (drop < samples.length - 2 && samples[drop + 1]!.at < cutoff) drop++;
      samples.splice(0, drop);
    }
    if (samples.length > MAX_KEPT_SAMPLES) samples.splice(0, samples.length - MAX_KEPT_SAMPLES);
  }

  /** The public stop: an operator (or daemon shutdown) asks the run to end. */
  stop(reason: KillReason, detail?: string): void {
    this.beginStop(reason, detail ?? (reason === 'operator' ? 'stopped by the operator' : `stopped: ${reason}`), reason === 'operator' ? 'operator' : 'limit', null, null);
  }

  private beginStop(reason: KillReason, detail: string, mode: StopMode, measured: number | null, limit: number | null): void {
    if (this.stopRecord || this.finished || !this.tree) return;
    const tree = this.tree;
    this.stopRecord = { reason, detail, beforeExit: this.leaderExit === null };
    if (this.stopRecord.beforeExit) safely(() => this.observer.killing(reason, measured, limit, detail));
    if (mode === 'limit' && this.stopRecord.beforeExit) {
      // Captured at the decision, before any signal: the processes are still exactly as they overran
      // (the kill is decided right after a sample, so the sampler's last walk is that very moment).
      const members = this.sampler ? this.sampler.members() : [];
      safely(() => this.observer.diagnostics(captureDiagnostics({ reason, detail, members, logFile: this.spec.logFile })));
    }
    const child = this.child;
    this.stopping = stopProcessTree({
      tree,
      mode,
      reason,
      graceMs: this.spec.job.stop_grace,
      runId: this.runIdMark,
      ...(child && child.hasChannel ? { sendStop: (why: string) => child.sendStop(why) } : {}),
    });
    void this.stopping.then(() => this.maybeFinish());
  }

  private onLeaderExit(exit: ChildExit): void {
    if (this.leaderExit) return;
    this.leaderExit = exit;
    if (!this.stopRecord && this.tree && liveTreePids(this.tree, true).length > 0) {
      // The main process is gone but it left processes behind: they are stopped (without counting as a kill).
      this.stopRecord = { reason: 'operator', detail: 'leftover processes stopped after the main process exited', beforeExit: false };
      this.stopping = stopProcessTree({ tree: this.tree, mode: 'limit', reason: 'main process exited', graceMs: this.spec.job.stop_grace, runId: this.runIdMark });
      void this.stopping.then(() => this.maybeFinish());
      return;
    }
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.finished || this.finishing || !this.leaderExit) return;
    this.finishing = true;
    const stopped = this.stopping ?? Promise.resolve<StopResult>({ survivors: [], sigkillSent: false });
    void stopped.then((result) => this.sweepEscapers(result.survivors)).then((survivors) => this.finish(survivors));
  }

  // The leader is gone and any stop is over: whatever still carries the run id escaped every walk (a
  // setsid'd or double-forked grandchild left behind before the first sample) and is ended now.
  /** One environ sweep for the run id; kills what it finds and returns the survivors (with those of the stop). */
  private async sweepEscapers(survivors: number[]): Promise<number[]> {
    if (!this.tree) return survivors;
    try {
      const swept = await sweepRunProcesses({ runId: this.runIdMark, bornAtOrAfter: this.tree.leaderStartTime, graceMs: this.spec.job.stop_grace });
      if (swept.found.length > 0 && !this.stopRecord) {
        this.stopRecord = { reason: 'operator', detail: `leftover processes stopped after the main process exited (${swept.found.join(', ')}, found by their run id)`, beforeExit: false };
      }
      return [...survivors, ...swept.survivors.filter((pid) => !survivors.includes(pid))];
    } catch (error) {
      console.error('duckvisor: sweeping leftover processes failed:', error);
      return survivors;
    }
  }

  private async finish(survivors: number[]): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    if (this.slot) samplingClock.remove(this.slot);
    this.slot = null;
    this.tree?.dispose();
    try {
      if (this.child) {
        const drained = await Promise.race([this.child.settled.then(() => true), sleep(PIPE_DRAIN_MS).then(() => false)]);
        if (!drained) {
          this.child.detachStreams();
          await this.child.settled;
        }
      }
    } catch {
      // settled never rejects; this is belt and braces so `done` always resolves.
    }
    // The tree is dead, so the log is complete: its last lines count before the outcome is told.
    this.child?.closeOutput();
    this.adoptedLog?.close();
    this.resolveDone(this.outcome(survivors));
  }

  private outcome(survivors: number[]): RunOutcome {
    const exit = this.leaderExit ?? { exitCode: null, signal: null, error: null };
    const base = {
      exitCode: exit.exitCode,
      signal: exit.signal,
      peakRss: this.peakRss,
      peakSwap: this.peakSwap,
      progress: this.progress,
      ready: this.ready,
      badMessages: this.badMessages,
      survivors,
    };
    const stop = this.stopRecord;
    if (stop && stop.beforeExit) return { ...base, state: 'killed', reason: stop.reason, detail: stop.detail };
    const leftovers = stop ? ` (${stop.detail})` : '';
    if (this.spec.adopt) {
      return { ...base, state: 'failed', reason: 'crash', detail: `adopted process group ${this.tree?.pgid} ended; its exit status is unknown${leftovers}` };
    }
    if (exit.exitCode === 0 && exit.signal === null) return { ...base, state: 'succeeded', reason: null, detail: stop ? stop.detail : null };
    const how = exit.signal !== null ? `killed by ${exit.signal}, which the supervisor did not send` : `exited with code ${exit.exitCode}`;
    return { ...base, state: 'failed', reason: 'crash', detail: how + leftovers };
  }

  private finishEarly(detail: string): void {
    if (this.finished) return;
    this.finished = true;
    this.resolveDone({
      state: 'failed',
      reason: 'crash',
      detail,
      exitCode: null,
      signal: null,
      peakRss: 0,
      peakSwap: 0,
      progress: null,
      ready: null,
      badMessages: this.badMessages,
      survivors: [],
    });
  }
}

// The daemon's only entry into the process layer: everything about one run's processes lives behind it.
/** Spawns (or adopts) one run and supervises it until every process of its tree is confirmed dead. */
export function startRun(spec: RunSpec, observer: RunObserver): RunHandle {
  const run = new Run(spec, observer);
  run.begin();
  return {
    get pid() {
      return run.pid;
    },
    stop: (reason: KillReason, detail?: string) => run.stop(reason, detail),
    done: run.done,
  };
}
