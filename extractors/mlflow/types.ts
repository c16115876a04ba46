// The one reader interface over the three places MLflow data lives (file store, SQL store, tracking
// server), and the entities it yields. Every list is an async iterator so no reader ever holds a whole
// experiment: runs come one listing at a time, metric histories in bounded batches.
import type { Readable } from 'node:stream';

export interface KeyValue {
  key: string;
  value: string;
}

export interface Experiment {
  /** Always a string: 18-digit ids exceed 2^53. */
  experimentId: string;
  name: string;
  artifactLocation: string | null;
  lifecycleStage: string;
  creationTime: number | null;
  lastUpdateTime: number | null;
  tags: KeyValue[];
}

export interface RunInfo {
  runId: string;
  experimentId: string;
  runName: string | null;
  userId: string | null;
  /** RUNNING, SCHEDULED, FINISHED, FAILED or KILLED. */
  status: string;
  startTime: number | null;
  endTime: number | null;
  deletedTime: number | null;
  lifecycleStage: string;
  artifactUri: string | null;
}

export interface MetricPoint {
  key: string;
  /** NaN and ±Infinity preserved (the SQL store's ±DBL_MAX decoded back to ±Infinity, as MLflow stores them). */
  value: number;
  timestamp: number;
  step: number;
}

export interface DatasetInput {
  name: string;
  digest: string;
  sourceType: string | null;
  source: string | null;
  context: string | null;
}

export interface RunData {
  params: KeyValue[];
  tags: KeyValue[];
  latestMetrics: MetricPoint[];
  inputs: DatasetInput[];
}

export interface ArtifactFile {
  /** Run-relative POSIX path, e.g. "signals/csv/S001.csv". */
  path: string;
  size: number | null;
}

/** A run the reader found but could not read: the extractor skips it (on_bad_run: skip) or fails. */
export interface BadRun {
  runId: string;
  experimentId: string;
  error: MlflowDataError;
}

export type RunListing = { ok: true; run: RunInfo } | ({ ok: false } & BadRun);

export interface RunQuery {
  includeDeleted: boolean;
  /** MLflow search filter (see filter.ts for what the file and SQL readers evaluate). */
  filter?: string | undefined;
}

export type SourceKind = 'file' | 'sql' | 'rest';

// Why: the extractors are written once against this; file-store.ts, sql-store.ts and rest-store.ts implement it.
export interface MlflowReader {
  readonly kind: SourceKind;
  /** Where the data comes from (a path or URL), for messages. */
  readonly location: string;
  /** Active experiments, plus deleted ones when includeDeleted. */
  experiments(options: { includeDeleted: boolean }): AsyncIterable<Experiment>;
  /** Runs of the given experiments (paged underneath); unreadable runs come as { ok: false }. */
  runs(experimentIds: readonly string[], query: RunQuery): AsyncIterable<RunListing>;
  /**
   * How many listings runs() will yield, when the store can tell cheaply and exactly (the SQL store
   * without a filter); undefined otherwise. Only for progress: runs() is read a window at a time.
   */
  countRuns?(experimentIds: readonly string[], query: RunQuery): Promise<number | undefined>;
  /** Params, tags, latest metrics and dataset inputs of one run. Throws MlflowDataError on bad data. */
  runData(run: RunInfo): Promise<RunData>;
  /** The metric keys a run has logged. */
  metricKeys(run: RunInfo): Promise<string[]>;
  /** Every logged point of one metric of one run, in batches of bounded size. */
  metricHistory(run: RunInfo, key: string): AsyncIterable<MetricPoint[]>;
  /** Every artifact file of a run (recursive), as run-relative paths. */
  artifacts(run: RunInfo): AsyncIterable<ArtifactFile>;
  /** A local file path for the artifact when the reader can reach it directly, else undefined. */
  localArtifactPath(run: RunInfo, path: string): Promise<string | undefined>;
  /** The artifact's bytes as a stream (downloaded for the REST reader). */
  openArtifact(run: RunInfo, path: string): Promise<Readable>;
  close(): Promise<void>;
}

// Why: bad data must name the run and the file so a user can find it; the extractor skips by runId.
export class MlflowDataError extends Error {
  override name = 'MlflowDataError';
  constructor(
    readonly runId: string | undefined,
    readonly file: string,
    detail: string,
  ) {
    super(`${runId !== undefined ? `run ${runId}: ` : ''}${file}: ${detail}`);
  }
}

/** Status names by the integer enum the file store writes (mlflow/protos/service.proto RunStatus). */
export const RUN_STATUS_BY_NUMBER: Readonly<Record<string, string>> = { '1': 'RUNNING', '2': 'SCHEDULED', '3': 'FINISHED', '4': 'FAILED', '5': 'KILLED' };

/** The SQL store writes ±inf as ±DBL_MAX (sanitize_metric_value); decode it back. */
export function decodeStoredDouble(value: number): number {
  if (value === 1.7976931348623157e308) return Infinity;
  if (value === -1.7976931348623157e308) return -Infinity;
  return value;
}

/** MLflow's "latest" order: max by (step, timestamp, value), NaN compared as 0 (the official migrator's proxy). */
export function isLaterMetric(candidate: MetricPoint, current: MetricPoint): boolean {
  if (candidate.step !== current.step) return candidate.step > current.step;
  if (candidate.timestamp !== current.timestamp) return candidate.timestamp > current.timestamp;
  const a = Number.isNaN(candidate.value) ? 0 : candidate.value;
  const b = Number.isNaN(current.value) ? 0 : current.value;
  return a > b;
}
