// The nouns shared across the daemon: resolved configuration, runs, samples, kill reasons.
// Config values here are already parsed: sizes in bytes, durations in milliseconds.

export type HeartbeatMode = 'ipc' | 'stdout' | 'none';

/** Why the supervisor killed a run. `thrash` = sustained major page faults. */
export const killReasons = ['memory', 'swap', 'disk', 'heartbeat', 'stalled', 'timeout', 'operator', 'thrash'] as const;
export type KillReason = (typeof killReasons)[number];

/**
 * Reasons a retry policy can name: kill reasons plus `crash` (non-zero exit / signal not sent by us), `interrupted`,
 * and `validation` (the output failed its checks: `ready` with validation.ok false, or exit code 65 EX_DATAERR).
 */
export const retryReasons = ['crash', 'interrupted', 'heartbeat', 'stalled', 'timeout', 'memory', 'swap', 'disk', 'thrash', 'validation'] as const;
export type RetryReason = (typeof retryReasons)[number];

export const runStates = ['queued', 'starting', 'running', 'publishing', 'succeeded', 'failed', 'killed', 'interrupted', 'skipped'] as const;
export type RunState = (typeof runStates)[number];
export const terminalStates: ReadonlySet<RunState> = new Set(['succeeded', 'failed', 'killed', 'interrupted', 'skipped']);

export interface Limits {
  /** Tree RSS in bytes. */
  rss?: number;
  /** Tree swap in bytes. */
  swap?: number;
  /** Minimum free bytes on the filesystems of state_dir and warehouse. */
  disk_free_min?: number;
  /** Major page faults per second of the tree, sustained over `thrash_window`, that count as thrashing. */
  majflt_rate?: number;
}

export interface RetryPolicy {
  max: number;
  backoff: number;
  factor: number;
  max_backoff: number;
  /** 0..1: fraction of the delay randomised. */
  jitter: number;
  on: RetryReason[];
}

/** Settings that `defaults` provides and each job may override under the same names. */
export interface JobSettings {
  limits: Limits;
  heartbeat_timeout: number;
  stall_timeout: number;
  /** 0 = unlimited. */
  max_runtime: number;
  stop_grace: number;
  sample_interval: number;
  /** Fraction (0..1) of a limit at which a one-time `warning` event is emitted. */
  warn_at: number;
  thrash_window: number;
  retries: RetryPolicy;
}

export interface JobConfig extends JobSettings {
  name: string;
  /** Exactly one of command/extractor is set. */
  command?: string[];
  extractor?: string;
  options: Record<string, unknown>;
  autostart: boolean;
  heartbeat: HeartbeatMode;
  /** Regular expression source with named groups `done` and optional `total`. */
  progress_pattern: string;
  env: Record<string, string>;
  cwd?: string;
  /** Cron expression; runs are skipped while one is still live. */
  schedule?: string;
  /** Jobs that must succeed in the same cycle before this one is queued. */
  after: string[];
}

export interface AlertConfig {
  on: AlertEventKind[];
  command?: string[];
  webhook?: string;
  timeout: number;
  retries: number;
}

export const alertEventKinds = ['killed', 'failed', 'retries_exhausted', 'stalled_warning', 'warning', 'succeeded', 'interrupted'] as const;
export type AlertEventKind = (typeof alertEventKinds)[number];

export interface DaemonConfig {
  /** Absolute path of the file this was read from. */
  file: string;
  state_dir: string;
  warehouse: string;
  concurrency: number;
  control: {
    socket: string;
    /** host:port for /metrics and the web page; unset = no TCP listener. */
    http?: string;
    http_token?: string;
  };
  /** What to do with live process groups of a crashed daemon: kill them, or adopt and supervise them. */
  recovery: 'kill' | 'adopt';
  /** Retention of history.sqlite (config.ts always sets it; absent = the built-in defaults). */
  history?: HistoryRetention;
  defaults: JobSettings;
  jobs: Map<string, JobConfig>;
  alerts: AlertConfig[];
}

/** How much finished history the daemon keeps; 0 switches a rule off. */
export interface HistoryRetention {
  /** Finished runs kept per job, newest first. */
  keep_runs: number;
  /** Finished runs older than this many days are deleted. */
  keep_days: number;
}

/** One reading of a run's process tree. */
export interface Sample {
  /** ms since epoch */
  at: number;
  rss: number;
  swap: number;
  /** user+system CPU of the tree, seconds (cumulative, live processes only) */
  cpu: number;
  /** Major faults per second of the tree since the previous sample. */
  majflt_rate: number;
  /** Smallest free space (bytes) over the watched filesystems. */
  disk_free: number;
  /** Number of processes in the tree. */
  procs: number;
  /** /proc/pressure/memory "some avg10", when present. */
  psi_some_avg10?: number;
}

export interface Progress {
  done: number;
  total?: number;
  unit: string;
  rows?: number;
  /** ms since epoch when `done` last advanced. */
  advanced_at: number;
}

/** What the daemon hands the process layer to start one run (see supervisor/run.ts). */
export interface RunSpec {
  runId: string;
  job: JobConfig;
  attempt: number;
  /** Program and arguments; for extractor jobs, node + the extractor entry. */
  argv: string[];
  /** Full child environment (already cleaned of the daemon's systemd variables). */
  env: Record<string, string>;
  cwd: string;
  /** stdout and stderr are appended here. */
  logFile: string;
  /** Open an IPC channel (serialization 'json'). */
  ipc: boolean;
  /** Paths whose filesystems' free space is watched against limits.disk_free_min. */
  watchPaths: string[];
  /** Adopt an already-running process group (crash recovery) instead of spawning. */
  adopt?: { pid: number; startTime: string };
}

/** Everything the process layer reports while a run lives; the daemon persists and forwards it. */
export interface RunObserver {
  started(pid: number, startTime: string): void;
  sample(sample: Sample): void;
  progress(progress: Progress): void;
  /** A valid protocol message (hello, log, ready, ... ) after validation. */
  message(message: import('../extractors/sdk/protocol.js').ChildMessage): void;
  badMessage(error: string): void;
  /** First crossing of warn_at × limit for this run (once per kind). */
  warning(kind: KillReason, measured: number, limit: number): void;
  /** The decision to kill, before signals are sent. `diagnostics` is captured before SIGKILL. */
  killing(reason: KillReason, measured: number | null, limit: number | null, detail: string): void;
  diagnostics(text: string): void;
}

export interface RunOutcome {
  state: 'succeeded' | 'failed' | 'killed';
  /** Kill reason when killed; 'crash' when the child died on its own with a non-zero code or a signal. */
  reason: KillReason | 'crash' | null;
  detail: string | null;
  exitCode: number | null;
  signal: string | null;
  peakRss: number;
  peakSwap: number;
  progress: Progress | null;
  ready: import('../extractors/sdk/protocol.js').ReadyMessage | null;
  badMessages: number;
  /** Pids still alive after the stop sequence (must be empty). */
  survivors: number[];
}

/** A live run as the daemon holds it; created by `startRun(spec, observer)` in supervisor/run.ts. */
export interface RunHandle {
  /** Undefined until the child has been spawned. */
  readonly pid: number | undefined;
  /** Starts the stop sequence (IPC stop, SIGTERM to the group, SIGKILL after stop_grace, sweep). Idempotent. */
  stop(reason: KillReason, detail?: string): void;
  /** Resolves once every process of the run is confirmed dead and reaped. Never rejects. */
  readonly done: Promise<RunOutcome>;
}
