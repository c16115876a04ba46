// The JSON shapes of the daemon's /v1 API as the page reads them (mirrors supervisor/control.ts and
// supervisor/history.ts; the page is compiled separately with the DOM library, so it keeps its own copy).

export type RunState = 'queued' | 'starting' | 'running' | 'publishing' | 'succeeded' | 'failed' | 'killed' | 'interrupted' | 'skipped';

/** One run as GET /v1/history and /v1/runs/:id return it. */
export interface RunView {
  id: string;
  job: string;
  attempt: number;
  chain_id: string;
  pid: number | null;
  state: RunState;
  reason: string | null;
  detail: string | null;
  exit_code: number | null;
  signal: string | null;
  queued_at: string;
  started_at: string | null;
  ended_at: string | null;
  peak_rss_bytes: number;
  peak_swap_bytes: number;
  progress_done: number | null;
  progress_total: number | null;
  progress_unit: string | null;
  rows_written: number | null;
  bad_messages: number;
  status_note: string | null;
  next_attempt_at: string | null;
  log_path: string | null;
}

/** One job in GET /v1/status and in the /v1/stream `status` events. */
export interface JobStatus {
  job: string;
  kind: 'command' | 'extractor';
  autostart: boolean;
  run: RunView | null;
  queued: RunView | null;
  rss_limit_bytes: number | null;
  /** Present once the daemon reports it (older daemons omit it). */
  swap_limit_bytes?: number | null;
  rate: number | null;
  eta_ms: number | null;
  uptime_ms: number | null;
  rss_bytes: number | null;
  swap_bytes: number | null;
  in_config: boolean;
}

export interface StatusView {
  daemon: { pid: number; started_at: string; config_file: string; state_dir: string; concurrency: number; live: number; queued: number; shutting_down: boolean };
  jobs: JobStatus[];
}

export interface SampleRow {
  seq: number;
  at: number;
  rss: number;
  swap: number;
  cpu: number;
  majflt_rate: number;
  disk_free: number;
  procs: number;
  /** Present once samples carry progress. */
  progress_done?: number | null;
}

export interface EventRow {
  id: number;
  run_id: string | null;
  job: string | null;
  at: string;
  kind: string;
  message: string;
  measured: number | null;
  limit_value: number | null;
  data_json: string | null;
}

export interface RunDetail {
  run: RunView;
  samples: SampleRow[];
  events: EventRow[];
}

export const liveStates: ReadonlySet<RunState> = new Set(['starting', 'running', 'publishing']);
export const runStates: readonly RunState[] = ['queued', 'starting', 'running', 'publishing', 'succeeded', 'failed', 'killed', 'interrupted', 'skipped'];
export const killReasons: readonly string[] = ['memory', 'swap', 'disk', 'heartbeat', 'stalled', 'timeout', 'operator', 'thrash', 'crash', 'shutdown', 'daemon_crash', 'validation', 'protocol', 'config'];
