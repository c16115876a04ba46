// Reader for MLflow's SQL store in SQLite (`mlflow.db`), opened read-only with better-sqlite3. The
// schema is introspected (PRAGMA table_info), not assumed, so databases from older MLflow versions
// read too (no latest_metrics → computed from metrics; no is_nan/step → defaults). Integers come back
// as BigInt (safeIntegers) and experiment ids are read as TEXT: 18-digit ids exceed 2^53. Every list
// is read in keyset-paged slices, so memory does not grow with the store.
import { statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { parseRunFilter } from './filter.js';
import {
  decodeStoredDouble,
  isLaterMetric,
  MlflowDataError,
  type DatasetInput,
  type Experiment,
  type KeyValue,
  type MetricPoint,
  type MlflowReader,
  type RunData,
  type RunInfo,
  type RunListing,
  type RunQuery,
} from './types.js';
import { isDirectory as isDir, LocalArtifacts, localPathOf } from './local-files.js';

const PAGE = 1000;
const HISTORY_PAGE = 10_000;
/**
 * SQLite page cache in KiB (negative cache_size). better-sqlite3 builds SQLite with a 16 MB default,
 * which a store larger than that fills completely, so RSS grew with the store up to there; every
 * read here is an index lookup or a keyset page, for which a small cache costs little.
 */
const PAGE_CACHE_KIB = 2048;

/** The condition that leaves out deleted experiments or runs (one for the listings and the count of runs). */
function notDeleted(includeDeleted: boolean): string {
  return includeDeleted ? '' : "AND coalesce(lifecycle_stage, 'active') <> 'deleted'";
}

export interface SqlReaderOptions {
  /** Where to look for run artifacts when the recorded absolute path does not exist (a moved store). */
  artifactRoot?: string | undefined;
  /** Milliseconds to wait for a lock held by a writer before giving up. Default 2000. */
  busyTimeoutMs?: number;
}

type Row = Record<string, unknown>;

function num(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'number') return value;
  const parsed = Number(value);
  return Number.isNaN(parsed) ? null : parsed;
}

function text(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? value : String(value);
}

/** Turns SQLite's errors into messages that say what happened to the file and what to do. */
function explain(error: unknown, file: string): string {
  const code = (error as { code?: string }).code ?? '';
  const message = error instanceof Error ? error.message : String(error);
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return `the database is locked by another process (${message}); retry when the writer has finished`;
  }
  if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB') || code === 'SQLITE_IOERR_SHORT_READ') {
    return `the database is damaged or truncated (${message}); restore it from a backup or re-copy it`;
  }
  return message;
}

// Why: the SQL store reader of the MlflowReader interface.
export class SqlStoreReader extends LocalArtifacts implements MlflowReader {
  readonly kind = 'sql' as const;
  private readonly columns = new Map<string, Set<string>>();

  private constructor(
    readonly location: string,
    private readonly db: Database.Database,
    private readonly options: SqlReaderOptions,
  ) {
    super();
  }

  /** Opens `file` read-only; a missing, locked, truncated or non-MLflow database is a clear error. */
  static open(file: string, options: SqlReaderOptions = {}): SqlStoreReader {
    const absolute = path.resolve(file);
    let db: Database.Database;
    try {
      const size = statSync(absolute).size;
      if (size === 0) throw Object.assign(new Error('file is empty'), { code: 'SQLITE_NOTADB' });
      db = new Database(absolute, { readonly: true, fileMustExist: true, timeout: options.busyTimeoutMs ?? 2000 });
      db.defaultSafeIntegers(true);
      db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new Error(`MLflow database ${absolute} does not exist (source sqlite:///… must name an existing mlflow.db)`);
      throw new Error(`cannot open MLflow database ${absolute}: ${explain(error, absolute)}`);
    }
    const reader = new SqlStoreReader(absolute, db, options);
    try {
      if (!reader.has('experiments') || !reader.has('runs')) {
        throw new Error(`${absolute} is a SQLite database but not an MLflow tracking store (no experiments/runs tables)`);
      }
    } catch (error) {
      db.close();
      if (error instanceof Error && /not an MLflow/.test(error.message)) throw error;
      throw new Error(`cannot read MLflow database ${absolute}: ${explain(error, absolute)}`);
    }
    return reader;
  }

  private tableColumns(table: string): Set<string> {
    let known = this.columns.get(table);
    if (known === undefined) {
      const rows = this.db.prepare(`PRAGMA table_info(${JSON.stringify(table)})`).all() as Row[];
      known = new Set(rows.map((row) => String(row['name'])));
      this.columns.set(table, known);
    }
    return known;
  }

  private has(table: string, column?: string): boolean {
    const columns = this.tableColumns(table);
    return column === undefined ? columns.size > 0 : columns.has(column);
  }

  /** `table.column` when the column exists, else the fallback literal. */
  private col(table: string, column: string, fallback = 'NULL'): string {
    return this.has(table, column) ? `"${column}"` : fallback;
  }

  /**
   * Prepared statements by SQL text. Preparing per call left one native sqlite3_stmt per call for the
   * garbage collector, which does not see native memory and ran too rarely: RSS grew with the run count.
   */
  private readonly statements = new Map<string, Database.Statement>();

  private statement(sql: string): Database.Statement {
    let prepared = this.statements.get(sql);
    if (prepared === undefined) {
      prepared = this.db.prepare(sql);
      this.statements.set(sql, prepared);
    }
    return prepared;
  }

  private query(sql: string, params: unknown[], runId?: string): Row[] {
    try {
      // duckvisor: allow materialize-all -- every caller pages with LIMIT (keyset) or reads one run's rows
      return this.statement(sql).all(...params) as Row[];
    } catch (error) {
      if (runId !== undefined) throw new MlflowDataError(runId, this.location, explain(error, this.location));
      throw new Error(`${this.location}: ${explain(error, this.location)}`);
    }
  }

  async *experiments(options: { includeDeleted: boolean }): AsyncGenerator<Experiment> {
    const hasTags = this.has('experiment_tags');
    let after: bigint | null = null;
    for (;;) {
      const rows: Row[] = this.query(
        `SELECT experiment_id AS id, CAST(experiment_id AS TEXT) AS experiment_id, name, ${this.col('experiments', 'artifact_location')} AS artifact_location,
                ${this.col('experiments', 'lifecycle_stage', "'active'")} AS lifecycle_stage, ${this.col('experiments', 'creation_time')} AS creation_time,
                ${this.col('experiments', 'last_update_time')} AS last_update_time
           FROM experiments WHERE (? IS NULL OR experiment_id > ?) ${notDeleted(options.includeDeleted)}
          ORDER BY experiment_id LIMIT ${PAGE}`,
        [after, after],
      );
      for (const row of rows) {
        const id = text(row['experiment_id'])!;
        const tags = hasTags ? this.query('SELECT key, value FROM experiment_tags WHERE experiment_id = ? ORDER BY key', [row['id']]) : [];
        yield {
          experimentId: id,
          name: text(row['name']) ?? id,
          artifactLocation: text(row['artifact_location']),
          lifecycleStage: text(row['lifecycle_stage']) ?? 'active',
          creationTime: num(row['creation_time']),
          lastUpdateTime: num(row['last_update_time']),
          tags: tags.map((tag) => ({ key: String(tag['key']), value: text(tag['value']) ?? '' })),
        };
      }
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!['id'] as bigint;
    }
  }

  async countRuns(experimentIds: readonly string[], query: RunQuery): Promise<number | undefined> {
    if (query.filter !== undefined && query.filter.trim() !== '') return undefined;
    if (experimentIds.length === 0) return 0;
    const [row] = this.query(
      `SELECT count(*) AS n FROM runs WHERE CAST(experiment_id AS TEXT) IN (${experimentIds.map(() => '?').join(', ')})
          ${notDeleted(query.includeDeleted)}`,
      [...experimentIds],
    );
    return Number(row?.['n'] ?? 0);
  }

  async *runs(experimentIds: readonly string[], query: RunQuery): AsyncGenerator<RunListing> {
    const filter = query.filter !== undefined && query.filter.trim() !== '' ? parseRunFilter(query.filter) : undefined;
    const c = (column: string, fallback?: string): string => this.col('runs', column, fallback);
    for (const experimentId of experimentIds) {
      let after = '';
      for (;;) {
        const rows: Row[] = this.query(
          `SELECT run_uuid, CAST(experiment_id AS TEXT) AS experiment_id, ${c('name')} AS name, ${c('user_id')} AS user_id, ${c('status', "'RUNNING'")} AS status,
                  ${c('start_time')} AS start_time, ${c('end_time')} AS end_time, ${c('deleted_time')} AS deleted_time,
                  ${c('lifecycle_stage', "'active'")} AS lifecycle_stage, ${c('artifact_uri')} AS artifact_uri
             FROM runs WHERE CAST(experiment_id AS TEXT) = ? AND run_uuid > ? ${notDeleted(query.includeDeleted)}
            ORDER BY run_uuid LIMIT ${PAGE}`,
          [experimentId, after],
        );
        for (const row of rows) {
          const run: RunInfo = {
            runId: String(row['run_uuid']),
            experimentId: text(row['experiment_id']) ?? experimentId,
            runName: text(row['name']),
            userId: text(row['user_id']),
            status: text(row['status']) ?? 'RUNNING',
            startTime: num(row['start_time']),
            endTime: num(row['end_time']),
            deletedTime: num(row['deleted_time']),
            lifecycleStage: text(row['lifecycle_stage']) ?? 'active',
            artifactUri: text(row['artifact_uri']),
          };
          if (filter !== undefined) {
            try {
              if (!filter.matches(run, filter.needsData ? await this.runData(run) : undefined)) continue;
            } catch (error) {
              if (error instanceof MlflowDataError) {
                yield { ok: false, runId: run.runId, experimentId: run.experimentId, error };
                continue;
              }
              throw error;
            }
          }
          yield { ok: true, run };
        }
        if (rows.length < PAGE) break;
        after = String(rows[rows.length - 1]!['run_uuid']);
      }
    }
  }

  private keyValues(table: 'params' | 'tags', runId: string): KeyValue[] {
    if (!this.has(table)) return [];
    return this.query(`SELECT key, value FROM ${table} WHERE run_uuid = ? ORDER BY key`, [runId], runId).map((row) => ({
      key: String(row['key']),
      value: text(row['value']) ?? '',
    }));
  }

  private metricValue(row: Row): number {
    const isNan = row['is_nan'];
    if (isNan === 1n || isNan === 1 || isNan === true) return NaN;
    return decodeStoredDouble(num(row['value']) ?? NaN);
  }

  private latestMetrics(runId: string): MetricPoint[] {
    const source = this.has('latest_metrics') ? 'latest_metrics' : 'metrics';
    const rows = this.query(
      `SELECT key, value, ${this.col(source, 'is_nan', '0')} AS is_nan, ${this.col(source, 'timestamp', '0')} AS timestamp, ${this.col(source, 'step', '0')} AS step
         FROM ${source} WHERE run_uuid = ? ORDER BY key`,
      [runId],
      runId,
    );
    const latest = new Map<string, MetricPoint>();
    for (const row of rows) {
      const point: MetricPoint = { key: String(row['key']), value: this.metricValue(row), timestamp: num(row['timestamp']) ?? 0, step: num(row['step']) ?? 0 };
      const current = latest.get(point.key);
      if (current === undefined || isLaterMetric(point, current)) latest.set(point.key, point);
    }
    return [...latest.values()];
  }

  private datasetInputs(runId: string): DatasetInput[] {
    if (!this.has('inputs') || !this.has('datasets')) return [];
    const context = this.has('input_tags')
      ? `(SELECT value FROM input_tags t WHERE t.input_uuid = i.input_uuid AND t.name = 'mlflow.data.context')`
      : 'NULL';
    return this.query(
      `SELECT d.name, d.digest, d.dataset_source_type, d.dataset_source, ${context} AS context
         FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id
        WHERE i.source_type = 'DATASET' AND i.destination_type = 'RUN' AND i.destination_id = ? ORDER BY d.name, d.digest`,
      [runId],
      runId,
    ).map((row) => ({
      name: text(row['name']) ?? '',
      digest: text(row['digest']) ?? '',
      sourceType: text(row['dataset_source_type']),
      source: text(row['dataset_source']),
      context: text(row['context']),
    }));
  }

  async runData(run: RunInfo): Promise<RunData> {
    return {
      params: this.keyValues('params', run.runId),
      tags: this.keyValues('tags', run.runId),
      latestMetrics: this.latestMetrics(run.runId),
      inputs: this.datasetInputs(run.runId),
    };
  }

  async metricKeys(run: RunInfo): Promise<string[]> {
    return this.query('SELECT DISTINCT key FROM metrics WHERE run_uuid = ? ORDER BY key', [run.runId], run.runId).map((row) => String(row['key']));
  }

  async *metricHistory(run: RunInfo, key: string): AsyncGenerator<MetricPoint[]> {
    const isNan = this.col('metrics', 'is_nan', '0');
    const step = this.col('metrics', 'step', '0');
    // Keyset paging over the primary key order (timestamp, step, value, is_nan); duplicates cannot exist (they are the PK).
    let cursor: [unknown, unknown, unknown, unknown] | undefined;
    for (;;) {
      const rows: Row[] = this.query(
        `SELECT key, value, ${isNan} AS is_nan, timestamp, ${step} AS step FROM metrics
          WHERE run_uuid = ? AND key = ? ${cursor === undefined ? '' : `AND (timestamp, ${step}, value, ${isNan}) > (?, ?, ?, ?)`}
          ORDER BY timestamp, ${step}, value, ${isNan} LIMIT ${HISTORY_PAGE}`,
        cursor === undefined ? [run.runId, key] : [run.runId, key, ...cursor],
        run.runId,
      );
      if (rows.length > 0) {
        yield rows.map((row) => ({ key, value: this.metricValue(row), timestamp: num(row['timestamp']) ?? 0, step: num(row['step']) ?? 0 }));
      }
      if (rows.length < HISTORY_PAGE) return;
      const last = rows[rows.length - 1]!;
      cursor = [last['timestamp'], last['step'], last['value'], last['is_nan']];
    }
  }

  /**
   * The run's artifact folder. The recorded path is absolute at write time; when it does not exist
   * (a copied store), the `<experiment id>/<run id>/artifacts` tail is looked up under `artifactRoot`,
   * then <dir of mlflow.db>/mlruns, <dir>/mlartifacts and <dir> itself.
   */
  protected async artifactRoot(run: RunInfo): Promise<string | undefined> {
    const uri = run.artifactUri;
    if (uri === null) return undefined;
    const recorded = localPathOf(uri);
    if (recorded !== undefined && path.isAbsolute(recorded) && (await isDir(recorded))) return recorded;
    let tail: string | undefined;
    if (uri.startsWith('mlflow-artifacts:')) tail = uri.replace(/^mlflow-artifacts:\/*/, '');
    else if (recorded !== undefined) {
      const posix = recorded.split(path.sep).join('/');
      const marker = `/${run.experimentId}/${run.runId}/`;
      const at = `/${posix}`.lastIndexOf(marker);
      tail = at >= 0 ? `/${posix}`.slice(at + 1) : undefined;
    } else {
      throw new MlflowDataError(run.runId, uri, 'artifacts live in a remote store the SQLite reader cannot reach; read this store through its tracking server (source: http://…)');
    }
    if (tail === undefined) return undefined;
    const dbDir = path.dirname(this.location);
    const roots = [this.options.artifactRoot, path.join(dbDir, 'mlruns'), path.join(dbDir, 'mlartifacts'), dbDir].filter((r): r is string => r !== undefined);
    for (const root of roots) {
      const candidate = path.join(path.resolve(dbDir, root), ...tail.split('/'));
      if (await isDir(candidate)) return candidate;
    }
    return undefined;
  }

  async close(): Promise<void> {
    this.statements.clear();
    this.db.close();
  }
}
