// Run history in <state_dir>/history.sqlite: runs, their resource samples, every event, and the persisted
// start queue. WAL + synchronous=NORMAL: every write is a small transaction that survives a daemon crash.
import Database from 'better-sqlite3';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from './paths.js';
import { terminalStates, type RunState, type Sample } from './types.js';

/** Where the numbered `NNN_name.sql` migrations live (source tree; tsc does not copy .sql files). */
export const defaultMigrationsDir = path.join(projectRoot, 'supervisor', 'migrations');

/** Samples stored per run before thinning starts; thinning halves the stored set each time it is reached. */
export const defaultMaxSamplesPerRun = 2000;

/** One row of `runs`, exactly as stored (timestamps in ms since epoch). */
export interface RunRow {
  id: string;
  job: string;
  attempt: number;
  chain_id: string;
  pid: number | null;
  pid_start_time: string | null;
  state: RunState;
  reason: string | null;
  detail: string | null;
  exit_code: number | null;
  signal: string | null;
  queued_at: number;
  started_at: number | null;
  ended_at: number | null;
  peak_rss_bytes: number;
  peak_swap_bytes: number;
  progress_done: number | null;
  progress_total: number | null;
  progress_unit: string | null;
  rows_written: number | null;
  bad_messages: number;
  status_note: string | null;
  next_attempt_at: number | null;
  staging_path: string | null;
  log_path: string | null;
  result_json: string | null;
  /** The dependency cycle this run belongs to (migration 002); null outside any cycle. */
  cycle_id: string | null;
}

export type RunUpdate = Partial<Omit<RunRow, 'id'>>;

export interface EventRow {
  id: number;
  run_id: string | null;
  job: string | null;
  at: number;
  kind: string;
  message: string;
  measured: number | null;
  limit_value: number | null;
  data_json: string | null;
}

export interface NewEvent {
  runId?: string | null;
  job?: string | null;
  kind: string;
  message: string;
  measured?: number | null;
  limit?: number | null;
  data?: unknown;
  at?: number;
}

export interface SampleRow extends Omit<Sample, 'psi_some_avg10'> {
  seq: number;
  /** The run's progress `done` when the sample was taken (migration 003); null before any progress. */
  progress_done: number | null;
}

export interface QueueRow {
  run_id: string;
  job: string;
  not_before: number;
  enqueued_at: number;
}

/** One row of `cycles` (see migrations/002_cycles.sql). */
export interface CycleRow {
  id: string;
  kind: 'once' | 'autostart' | 'schedule' | 'with-deps';
  root: string | null;
  /** Member job names in dependency order. */
  jobs: string[];
  started_at: number;
  ended_at: number | null;
  outcome: 'succeeded' | 'failed' | 'abandoned' | null;
}

export interface RunFilter {
  job?: string;
  state?: string;
  reason?: string;
  limit?: number;
}

/** A run as the control API and `--json` output show it: ISO-8601 timestamps, parsed result. */
export interface RunView extends Omit<RunRow, 'queued_at' | 'started_at' | 'ended_at' | 'next_attempt_at' | 'result_json'> {
  queued_at: string;
  started_at: string | null;
  ended_at: string | null;
  next_attempt_at: string | null;
  result: unknown;
}

/** How much finished history to keep; 0 switches a rule off. */
export interface RetentionRule {
  /** Newest runs kept per job (finished runs beyond them are pruned). */
  keepRuns: number;
  /** Finished runs (and daemon-wide events) older than this many days are pruned. */
  keepDays: number;
}

/** A run removed by `pruneRuns` (its log file is the caller's to delete). */
export interface PrunedRun {
  id: string;
  job: string;
  log_path: string | null;
}

/** Runs removed per `pruneRuns` call: small enough that one call keeps the event loop busy only a few ms. */
export const defaultPruneBatch = 100;

const dayMs = 86_400_000;

/** Thrown when the history file cannot be used (newer schema, bad migration file); the message says what to do. */
export class HistoryError extends Error {
  override name = 'HistoryError';
}

const runColumns = [
  'job', 'attempt', 'chain_id', 'pid', 'pid_start_time', 'state', 'reason', 'detail', 'exit_code', 'signal',
  'queued_at', 'started_at', 'ended_at', 'peak_rss_bytes', 'peak_swap_bytes', 'progress_done', 'progress_total',
  'progress_unit', 'rows_written', 'bad_messages', 'status_note', 'next_attempt_at', 'staging_path', 'log_path',
  'result_json', 'cycle_id',
] as const;
const runColumnSet: ReadonlySet<string> = new Set(runColumns);

/** Converts a stored ms timestamp to ISO-8601 (null stays null). */
export function isoTime(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}

/** The API shape of a run row. */
export function runView(row: RunRow): RunView {
  let result: unknown = null;
  if (row.result_json) {
    try {
      result = JSON.parse(row.result_json);
    } catch {
      result = row.result_json;
    }
  }
  const { result_json: _unused, ...rest } = row;
  return {
    ...rest,
    queued_at: isoTime(row.queued_at)!,
    started_at: isoTime(row.started_at),
    ended_at: isoTime(row.ended_at),
    next_attempt_at: isoTime(row.next_attempt_at),
    result,
  };
}

interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Reads `NNN_name.sql` files in numeric order; a malformed name is an error, not a silent skip. */
export function readMigrations(dir: string): Migration[] {
  const migrations: Migration[] = [];
  for (const file of readdirSync(dir)) {
    if (!file.endsWith('.sql')) continue;
    const match = /^(\d+)_([A-Za-z0-9_-]+)\.sql$/.exec(file);
    if (!match) throw new HistoryError(`${path.join(dir, file)}: migration files must be named NNN_name.sql`);
    migrations.push({ version: Number(match[1]), name: file, sql: readFileSync(path.join(dir, file), 'utf8') });
  }
  migrations.sort((a, b) => a.version - b.version);
  for (let i = 1; i < migrations.length; i += 1) {
    if (migrations[i]!.version === migrations[i - 1]!.version) {
      throw new HistoryError(`${dir}: two migrations share number ${migrations[i]!.version}: ${migrations[i - 1]!.name}, ${migrations[i]!.name}`);
    }
  }
  return migrations;
}

interface SampleState {
  runId: string;
  seq: number;
  stride: number;
  stored: number;
  maxRss: number;
  maxRssSeq: number;
  /** An off-stride sample stored only because it is the latest; replaced by the next one. */
  tailSeq: number | null;
  /** Exact peaks over every sample seen (stored or not), and what `runs` holds so far. */
  peakRss: number;
  peakSwap: number;
  writtenPeakRss: number;
  writtenPeakSwap: number;
  /** Sample time of the last peaks write; -Infinity before the first. */
  peaksWrittenAt: number;
  /** Sample time from which the changed peaks may be written. */
  peaksDueAt: number;
  /** Time of the newest sample seen. */
  lastSeenAt: number;
}

/** One sample waiting for the end-of-tick write. */
interface PendingSample {
  state: SampleState;
  at: number;
  rss: number;
  swap: number;
  cpu: number;
  majflt_rate: number;
  disk_free: number;
  procs: number;
  progressDone: number | null;
}

/** Peaks of a live run are written to `runs` at most this often (sample time, ms); the run's end writes them exactly. */
export const PEAKS_WRITE_INTERVAL_MS = 1000;

export interface HistoryOptions {
  migrationsDir?: string;
  maxSamplesPerRun?: number;
  /** Pages of SQLite's page cache (negative: KiB), bounding the daemon's memory; default -2048 (2 MiB). */
  cacheSize?: number;
  /** Called when a deferred sample write fails (the batch is dropped; the daemon goes on). */
  onWriteError?: (error: Error) => void;
}

/** Default SQLite page cache: 2 MiB (the history is written in small batches and read rarely). */
export const defaultCacheSizeKiB = 2048;

// Why a class: it owns one connection and its prepared statements, plus the per-run downsampling state.
/** The daemon's SQLite history. Open with `History.open(file)`. */
export class History {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly maxSamples: number;
  private readonly sampleStates = new Map<string, SampleState>();
  private readonly statements;
  private pending: PendingSample[] = [];
  /** Runs whose peaks rose above what `runs` holds. */
  private readonly dirtyPeaks = new Set<SampleState>();
  private flushScheduled = false;
  private readonly onWriteError: (error: Error) => void;
  private readonly flushSoon = (): void => {
    this.flushScheduled = false;
    if (!this.db.open) return;
    try {
      this.flush();
    } catch (error) {
      this.onWriteError(error as Error);
    }
  };
  private readonly writeBatch: (batch: PendingSample[], peaks: boolean) => void;

  private constructor(file: string, db: Database.Database, maxSamples: number, onWriteError: (error: Error) => void) {
    this.file = file;
    this.db = db;
    this.maxSamples = maxSamples;
    this.onWriteError = onWriteError;
    this.statements = {
      insertRun: db.prepare(
        `INSERT INTO runs (id, ${runColumns.join(', ')}) VALUES (@id, ${runColumns.map((c) => '@' + c).join(', ')})`,
      ),
      getRun: db.prepare('SELECT * FROM runs WHERE id = ?'),
      insertEvent: db.prepare(
        'INSERT INTO events (run_id, job, at, kind, message, measured, limit_value, data_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      insertSample: db.prepare(
        'INSERT INTO samples (run_id, seq, at, rss, swap, cpu, majflt_rate, disk_free, procs, progress_done) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      deleteSample: db.prepare('DELETE FROM samples WHERE run_id = ? AND seq = ?'),
      thinSamples: db.prepare('DELETE FROM samples WHERE run_id = ? AND seq % ? != 0 AND seq NOT IN (?, ?)'),
      countSamples: db.prepare('SELECT count(*) AS n, max(seq) AS last FROM samples WHERE run_id = ?'),
      maxRssSample: db.prepare('SELECT seq, rss FROM samples WHERE run_id = ? ORDER BY rss DESC, seq ASC LIMIT 1'),
      peaks: db.prepare(
        'UPDATE runs SET peak_rss_bytes = max(peak_rss_bytes, ?), peak_swap_bytes = max(peak_swap_bytes, ?) WHERE id = ?',
      ),
      samples: db.prepare('SELECT seq, at, rss, swap, cpu, majflt_rate, disk_free, procs, progress_done FROM samples WHERE run_id = ? ORDER BY seq'),
      enqueue: db.prepare('INSERT OR REPLACE INTO queue (run_id, job, not_before, enqueued_at) VALUES (?, ?, ?, ?)'),
      dequeue: db.prepare('DELETE FROM queue WHERE run_id = ?'),
      queue: db.prepare('SELECT * FROM queue ORDER BY not_before, enqueued_at, run_id'),
      countBad: db.prepare('UPDATE runs SET bad_messages = bad_messages + 1 WHERE id = ?'),
    };
    this.writeBatch = db.transaction((batch: PendingSample[], peaks: boolean) => {
      for (let i = 0; i < batch.length; i++) this.storeSample(batch[i]!);
      if (peaks) this.writeDirtyPeaks(false);
    });
  }

  /** Opens (creating if needed) the history database and applies pending migrations in order. */
  static open(file: string, options: HistoryOptions = {}): History {
    mkdirSync(path.dirname(file), { recursive: true });
    const db = new Database(file);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      db.pragma('foreign_keys = ON');
      migrate(db, readMigrations(options.migrationsDir ?? defaultMigrationsDir), file);
    } catch (error) {
      db.close();
      throw error;
    }
    db.pragma(`cache_size = ${options.cacheSize ?? -defaultCacheSizeKiB}`);
    const onWriteError = options.onWriteError ?? ((error: Error) => console.error('duckvisor: could not write samples:', error.message));
    return new History(file, db, options.maxSamplesPerRun ?? defaultMaxSamplesPerRun, onWriteError);
  }

  close(): void {
    if (!this.db.open) return;
    try {
      this.flush(true);
    } finally {
      this.db.close();
    }
  }

  /** Versions of the applied migrations, ascending. */
  appliedMigrations(): number[] {
    return (this.db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as { version: number }[]).map((r) => r.version);
  }

  createRun(row: Pick<RunRow, 'id' | 'job' | 'attempt' | 'chain_id' | 'state' | 'queued_at'> & RunUpdate): RunRow {
    const full: Record<string, unknown> = { id: row.id };
    for (const column of runColumns) full[column] = (row as Record<string, unknown>)[column] ?? null;
    full.peak_rss_bytes ??= 0;
    full.peak_swap_bytes ??= 0;
    full.bad_messages ??= 0;
    this.statements.insertRun.run(full);
    return this.getRun(row.id)!;
  }

  /** Creates a queued run and its queue entry in one transaction. */
  createQueuedRun(row: Pick<RunRow, 'id' | 'job' | 'attempt' | 'chain_id' | 'queued_at'> & RunUpdate, notBefore: number): RunRow {
    return this.db.transaction(() => {
      const created = this.createRun({ ...row, state: 'queued' });
      this.statements.enqueue.run(row.id, row.job, notBefore, row.queued_at);
      return created;
    })();
  }

  getRun(id: string): RunRow | undefined {
    return this.statements.getRun.get(id) as RunRow | undefined;
  }

  updateRun(id: string, update: RunUpdate): void {
    const keys = Object.keys(update).filter((key) => runColumnSet.has(key));
    if (keys.length === 0) return;
    const values = keys.map((key) => (update as Record<string, unknown>)[key] ?? null);
    this.db.prepare(`UPDATE runs SET ${keys.map((key) => `${key} = ?`).join(', ')} WHERE id = ?`).run(...values, id);
  }

  /** Updates a run and records an event about it atomically (state changes, kills). */
  updateRunWithEvent(id: string, update: RunUpdate, event: NewEvent): void {
    this.db.transaction(() => {
      this.updateRun(id, update);
      this.addEvent(event);
    })();
  }

  /** Newest first. */
  listRuns(filter: RunFilter = {}): RunRow[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.job !== undefined) (where.push('job = ?'), params.push(filter.job));
    if (filter.state !== undefined) (where.push('state = ?'), params.push(filter.state));
    if (filter.reason !== undefined) (where.push('reason = ?'), params.push(filter.reason));
    const limit = Math.max(1, Math.min(filter.limit ?? 50, 100_000));
    const sql = `SELECT * FROM runs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY queued_at DESC, id DESC LIMIT ${limit}`;
    return this.db.prepare(sql).all(...params) as RunRow[];
  }

  runsInStates(states: readonly RunState[]): RunRow[] {
    if (states.length === 0) return [];
    return this.db
      .prepare(`SELECT * FROM runs WHERE state IN (${states.map(() => '?').join(', ')}) ORDER BY queued_at, id`)
      .all(...states) as RunRow[];
  }

  /** The most recent run of each job (by queue time). */
  latestRuns(): RunRow[] {
    return this.db
      .prepare(
        `SELECT r.* FROM runs r WHERE r.id = (SELECT id FROM runs r2 WHERE r2.job = r.job ORDER BY queued_at DESC, id DESC LIMIT 1) ORDER BY r.job`,
      )
      .all() as RunRow[];
  }

  /** The most recent run of a chain other than `excludeId`; used to count attempts. */
  chainRuns(chainId: string): RunRow[] {
    return this.db.prepare('SELECT * FROM runs WHERE chain_id = ? ORDER BY attempt').all(chainId) as RunRow[];
  }

  addEvent(event: NewEvent): number {
    const info = this.statements.insertEvent.run(
      event.runId ?? null,
      event.job ?? null,
      event.at ?? Date.now(),
      event.kind,
      event.message,
      event.measured ?? null,
      event.limit ?? null,
      event.data === undefined ? null : JSON.stringify(event.data),
    );
    return Number(info.lastInsertRowid);
  }

  /** Oldest first; `limit` keeps the newest N. */
  events(runId: string, limit?: number): EventRow[] {
    if (limit === undefined) return this.db.prepare('SELECT * FROM events WHERE run_id = ? ORDER BY id').all(runId) as EventRow[];
    const rows = this.db.prepare('SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT ?').all(runId, limit) as EventRow[];
    return rows.reverse();
  }

  countBadMessage(runId: string, error: string, job: string): void {
    this.db.transaction(() => {
      this.statements.countBad.run(runId);
      this.addEvent({ runId, job, kind: 'bad_message', message: error });
    })();
  }

  /**
   * Stores one sample and raises the run's peaks. The write is deferred to the end of the current event-loop
   * turn, where every sample of that turn (all runs of one sampling tick) goes in ONE transaction; reads of
   * samples (`samples`, `flush`, `close`, `releaseSamples`) write what is pending first.
   *
   * Every sample is kept until the run has `maxSamples` stored; then the stride doubles and every stored
   * sample off the new stride is deleted — except the max-RSS sample and the latest one, which are always
   * kept. `progressDone` is the run's live progress at that moment (null before the first report), stored
   * with the sample for the progress curve.
   */
  addSample(runId: string, sample: Sample, progressDone: number | null = null): void {
    const state = this.sampleState(runId);
    this.raisePeaks(state, sample);
    this.pending.push({
      state,
      at: sample.at,
      rss: Math.round(sample.rss),
      swap: Math.round(sample.swap),
      cpu: sample.cpu,
      majflt_rate: sample.majflt_rate,
      disk_free: Math.round(sample.disk_free),
      procs: sample.procs,
      progressDone,
    });
    this.scheduleFlush();
  }

  /**
   * Takes a sample into the run's peaks without storing it (the daemon stores at most about one sample a
   * second per run); `runs.peak_rss_bytes`/`peak_swap_bytes` stay the max over EVERY sample.
   */
  notePeaks(runId: string, sample: Pick<Sample, 'at' | 'rss' | 'swap'>): void {
    if (this.raisePeaks(this.sampleState(runId), sample)) this.scheduleFlush();
  }

  /** Writes the pending samples (one transaction) and the peaks due; `allPeaks` writes every changed peak now. */
  flush(allPeaks = false): void {
    if (this.pending.length === 0 && this.dirtyPeaks.size === 0) return;
    const batch = this.pending;
    this.pending = [];
    try {
      this.writeBatch(batch, false);
    } finally {
      // Peaks outside the sample transaction: a failed sample batch must not hold back the peaks.
      if (this.dirtyPeaks.size > 0) this.db.transaction(() => this.writeDirtyPeaks(allPeaks))();
    }
  }

  private raisePeaks(state: SampleState, sample: Pick<Sample, 'at' | 'rss' | 'swap'>): boolean {
    let raised = false;
    const rss = Math.round(sample.rss);
    const swap = Math.round(sample.swap);
    if (rss > state.peakRss) (state.peakRss = rss), (raised = true);
    if (swap > state.peakSwap) (state.peakSwap = swap), (raised = true);
    if (raised && (state.peakRss > state.writtenPeakRss || state.peakSwap > state.writtenPeakSwap)) {
      this.dirtyPeaks.add(state);
      // Sample time drives the throttle, so a run's peaks reach `runs` at most once a second of its samples.
      if (sample.at - state.peaksWrittenAt < PEAKS_WRITE_INTERVAL_MS) state.peaksDueAt = state.peaksWrittenAt + PEAKS_WRITE_INTERVAL_MS;
      else state.peaksDueAt = sample.at;
      state.lastSeenAt = sample.at;
      return true;
    }
    if (sample.at > state.lastSeenAt) state.lastSeenAt = sample.at;
    return false;
  }

  private writeDirtyPeaks(all: boolean): void {
    for (const state of this.dirtyPeaks) {
      if (!all && state.lastSeenAt < state.peaksDueAt) continue;
      this.statements.peaks.run(state.peakRss, state.peakSwap, state.runId);
      state.writtenPeakRss = state.peakRss;
      state.writtenPeakSwap = state.peakSwap;
      state.peaksWrittenAt = state.lastSeenAt;
      this.dirtyPeaks.delete(state);
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushSoon).unref();
  }

  private storeSample(pending: PendingSample): void {
    const state = pending.state;
    const runId = state.runId;
    state.seq += 1;
    const seq = state.seq;
    if (state.tailSeq !== null && state.tailSeq !== state.maxRssSeq) {
      this.statements.deleteSample.run(runId, state.tailSeq);
      state.stored -= 1;
    }
    state.tailSeq = null;
    this.statements.insertSample.run(runId, seq, pending.at, pending.rss, pending.swap, pending.cpu, pending.majflt_rate, pending.disk_free, pending.procs, pending.progressDone);
    state.stored += 1;
    if (pending.rss > state.maxRss) {
      state.maxRss = pending.rss;
      state.maxRssSeq = seq;
    }
    if (seq % state.stride !== 0) state.tailSeq = seq;
    if (state.stored > this.maxSamples) {
      state.stride *= 2;
      this.statements.thinSamples.run(runId, state.stride, state.maxRssSeq, seq);
      state.stored = (this.statements.countSamples.get(runId) as { n: number }).n;
      state.tailSeq = seq % state.stride !== 0 ? seq : null;
    }
  }

  samples(runId: string): SampleRow[] {
    this.flush();
    return this.statements.samples.all(runId) as SampleRow[];
  }

  /** Writes a finished run's pending samples and exact peaks, then forgets its in-memory sampling state. */
  releaseSamples(runId: string): void {
    const state = this.sampleStates.get(runId);
    if (!state) return;
    this.flush();
    if (this.dirtyPeaks.has(state)) {
      this.statements.peaks.run(state.peakRss, state.peakSwap, runId);
      this.dirtyPeaks.delete(state);
    }
    this.sampleStates.delete(runId);
  }

  /** Number of runs whose sampling state is held in memory (live runs; for leak checks). */
  get trackedRuns(): number {
    return this.sampleStates.size;
  }

  /**
   * Deletes up to `batch` finished runs beyond the retention (with their samples and events), oldest first.
   * Never touches a live or queued run, a run whose retry chain still has a live or queued attempt (its
   * attempts are counted), nor a run of an open cycle. Returns what it deleted; call again until it returns
   * fewer than `batch`.
   */
  pruneRuns(rule: RetentionRule, now: number = Date.now(), batch: number = defaultPruneBatch): PrunedRun[] {
    const keepRuns = rule.keepRuns > 0 ? Math.floor(rule.keepRuns) : 0;
    const cutoff = rule.keepDays > 0 ? now - rule.keepDays * dayMs : null;
    if (keepRuns === 0 && cutoff === null) return [];
    this.flush(true);
    const terminal = [...terminalStates].map((state) => `'${state}'`).join(', ');
    const overCount = keepRuns > 0 ? 'r.rank > @keepRuns' : '0';
    const tooOld = cutoff !== null ? 'coalesce(r.ended_at, r.queued_at) < @cutoff' : '0';
    const victims = this.db
      .prepare(
        `SELECT r.id, r.job, r.log_path FROM (
           SELECT id, job, log_path, state, chain_id, cycle_id, queued_at, ended_at,
                  row_number() OVER (PARTITION BY job ORDER BY queued_at DESC, id DESC) AS rank
           FROM runs) r
         WHERE r.state IN (${terminal}) AND (${overCount} OR ${tooOld})
           AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.run_id = r.id)
           AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.chain_id = r.chain_id AND c.state NOT IN (${terminal}))
           AND (r.cycle_id IS NULL OR NOT EXISTS (SELECT 1 FROM cycles y WHERE y.id = r.cycle_id AND y.ended_at IS NULL))
         ORDER BY r.queued_at, r.id
         LIMIT @batch`,
      )
      .all({ keepRuns, cutoff: cutoff ?? 0, batch: Math.max(1, Math.floor(batch)) }) as PrunedRun[];
    if (victims.length === 0 && cutoff === null) return victims;
    const deleteSamples = this.db.prepare('DELETE FROM samples WHERE run_id = ?');
    const deleteEvents = this.db.prepare('DELETE FROM events WHERE run_id = ?');
    const deleteRun = this.db.prepare('DELETE FROM runs WHERE id = ?');
    this.db.transaction(() => {
      for (const victim of victims) {
        deleteSamples.run(victim.id);
        deleteEvents.run(victim.id);
        deleteRun.run(victim.id);
        this.sampleStates.delete(victim.id);
      }
      if (cutoff !== null) {
        // Daemon-wide events (starts, reloads, skipped schedules) and ended cycles nothing refers to any more.
        this.db.prepare('DELETE FROM events WHERE id IN (SELECT id FROM events WHERE run_id IS NULL AND at < ? ORDER BY id LIMIT ?)').run(cutoff, batch * 10);
        this.db
          .prepare('DELETE FROM cycles WHERE id IN (SELECT id FROM cycles y WHERE y.ended_at IS NOT NULL AND y.ended_at < ? AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.cycle_id = y.id) LIMIT ?)')
          .run(cutoff, batch);
      }
    })();
    return victims;
  }

  /** Number of rows in runs, samples and events (retention checks and the soak report). */
  counts(): { runs: number; samples: number; events: number } {
    const count = (table: string) => (this.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { runs: count('runs'), samples: count('samples'), events: count('events') };
  }

  enqueue(runId: string, job: string, notBefore: number): void {
    this.statements.enqueue.run(runId, job, notBefore, Date.now());
  }

  dequeue(runId: string): void {
    this.statements.dequeue.run(runId);
  }

  queue(): QueueRow[] {
    return this.statements.queue.all() as QueueRow[];
  }

  /** Records a new open cycle. */
  createCycle(cycle: Pick<CycleRow, 'id' | 'kind' | 'root' | 'jobs' | 'started_at'>): void {
    this.db
      .prepare('INSERT INTO cycles (id, kind, root, jobs_json, started_at) VALUES (?, ?, ?, ?, ?)')
      .run(cycle.id, cycle.kind, cycle.root, JSON.stringify(cycle.jobs), cycle.started_at);
  }

  getCycle(id: string): CycleRow | undefined {
    const row = this.db.prepare('SELECT * FROM cycles WHERE id = ?').get(id) as StoredCycle | undefined;
    return row ? cycleFromStored(row) : undefined;
  }

  /** Cycles not yet ended, oldest first. */
  openCycles(): CycleRow[] {
    return (this.db.prepare('SELECT * FROM cycles WHERE ended_at IS NULL ORDER BY started_at, id').all() as StoredCycle[]).map(cycleFromStored);
  }

  /** The most recent cycle (open or ended) that has `job` among its members. */
  latestCycleWith(job: string): CycleRow | undefined {
    const rows = this.db.prepare('SELECT * FROM cycles ORDER BY started_at DESC, id DESC LIMIT 200').all() as StoredCycle[];
    return rows.map(cycleFromStored).find((cycle) => cycle.jobs.includes(job));
  }

  endCycle(id: string, outcome: NonNullable<CycleRow['outcome']>, at: number = Date.now()): void {
    this.db.prepare('UPDATE cycles SET ended_at = ?, outcome = ? WHERE id = ? AND ended_at IS NULL').run(at, outcome, id);
  }

  /** Every run of a cycle, oldest first (by queue time, then attempt). */
  cycleRuns(cycleId: string): RunRow[] {
    return this.db.prepare('SELECT * FROM runs WHERE cycle_id = ? ORDER BY queued_at, attempt, id').all(cycleId) as RunRow[];
  }

  /** Runs `work` in one transaction. */
  transaction<T>(work: () => T): T {
    return this.db.transaction(work)();
  }

  private sampleState(runId: string): SampleState {
    let state = this.sampleStates.get(runId);
    if (!state) {
      // A run resumed after a daemon restart (adoption): continue from what is stored.
      const counts = this.statements.countSamples.get(runId) as { n: number; last: number | null };
      const max = this.statements.maxRssSample.get(runId) as { seq: number; rss: number } | undefined;
      let stride = 1;
      while (counts.last !== null && counts.last / stride > this.maxSamples) stride *= 2;
      const peaks = this.statements.getRun.get(runId) as Pick<RunRow, 'peak_rss_bytes' | 'peak_swap_bytes'> | undefined;
      const peakRss = peaks?.peak_rss_bytes ?? 0;
      const peakSwap = peaks?.peak_swap_bytes ?? 0;
      state = {
        runId,
        seq: counts.last ?? 0,
        stride,
        stored: counts.n,
        maxRss: max?.rss ?? -1,
        maxRssSeq: max?.seq ?? 0,
        tailSeq: null,
        peakRss,
        peakSwap,
        writtenPeakRss: peakRss,
        writtenPeakSwap: peakSwap,
        peaksWrittenAt: Number.NEGATIVE_INFINITY,
        peaksDueAt: Number.NEGATIVE_INFINITY,
        lastSeenAt: Number.NEGATIVE_INFINITY,
      };
      this.sampleStates.set(runId, state);
    }
    return state;
  }
}

interface StoredCycle extends Omit<CycleRow, 'jobs'> {
  jobs_json: string;
}

function cycleFromStored(row: StoredCycle): CycleRow {
  const { jobs_json, ...rest } = row;
  return { ...rest, jobs: JSON.parse(jobs_json) as string[] };
}

function migrate(db: Database.Database, migrations: Migration[], file: string): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
  const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
  const newestKnown = migrations.at(-1)?.version ?? 0;
  const newestApplied = Math.max(0, ...applied);
  if (newestApplied > newestKnown) {
    throw new HistoryError(
      `${file} has schema migration ${newestApplied} but this duckvisor only knows up to ${newestKnown}; ` +
        'run a newer duckvisor or point state_dir elsewhere',
    );
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const migration of migrations) {
    if (applied.has(migration.version)) continue;
    try {
      db.transaction(() => {
        db.exec(migration.sql);
        record.run(migration.version, migration.name, Date.now());
      })();
    } catch (error) {
      throw new HistoryError(`${file}: migration ${migration.name} failed: ${(error as Error).message}`);
    }
  }
}
