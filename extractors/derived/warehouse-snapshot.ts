// A private, read-only snapshot of the warehouse for derived extractors.
//
// DuckDB lets one process hold a database file, and it locks out readers of other processes too. A
// derived extractor that queried the warehouse in place would block the publisher for as long as it
// runs. So we take the lock only briefly: open the warehouse READ_ONLY (which fails while the
// publisher writes — we wait and retry), copy the file (and its .wal, if any) next to the staging
// database while holding it, release it, and work on the copy. The copy is consistent because no
// writer can hold the file while our read-only handle is open. It is deleted on close.
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DuckDBConnection, DuckDBInstance, DuckDBValue } from '@duckdb/node-api';
import { duckdb } from '../sdk/duckdb.js';
import { duckdbSettings, parseRssLimit } from '../sdk/limits.js';
import { childEnv } from '../sdk/protocol.js';

/** Schema name under which the snapshot is attached (and made the default, so `FROM runs` works). */
export const SNAPSHOT_SCHEMA = 'wh';

export interface SnapshotOptions {
  /** The warehouse file (ctx.warehouse). */
  warehouse: string | undefined;
  /** Directory for the copy; default: the folder of DUCKVISOR_STAGING, else the warehouse's folder. */
  directory?: string;
  /** Distinguishes concurrent snapshots, e.g. the run id. */
  label: string;
  /** How long to wait for the publisher to release the warehouse. Default 10 minutes. */
  lockWaitMs?: number;
  /** Called while waiting, so the run's log says why it is not progressing. */
  onWait?: (message: string) => void;
  /** DuckDB settings for the analysis instance; default: a quarter of the job's RSS limit, 2 threads. */
  settings?: Record<string, string>;
}

export interface WarehouseSnapshot {
  /** A connection whose default schema is the snapshot (read-only); TEMP tables may be created. */
  readonly connection: DuckDBConnection;
  /** Path of the private copy. */
  readonly file: string;
  /** True when the warehouse has this table (in schema main). */
  hasTable(name: string): Promise<boolean>;
  /** Column names of a warehouse table, in order (empty when the table is missing). */
  columns(name: string): Promise<string[]>;
  /** Runs a query and returns all rows as objects (for small results: k methods, a run's predictions). */
  all(sql: string, params?: DuckDBValue[]): Promise<Record<string, DuckDBValue>[]>;
  /** Streams a query's rows in chunks of up to 2048 rows, so large results never sit in memory. */
  stream(sql: string, params?: DuckDBValue[]): AsyncGenerator<Record<string, DuckDBValue>[]>;
  /** Closes DuckDB and deletes the copy (idempotent). */
  close(): void;
}

function isLockError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /Could not set lock|Conflicting lock|lock on file/i.test(message);
}

/** Copies the warehouse while holding a read-only handle on it (so no writer is mid-write). */
async function copyUnderReadLock(warehouse: string, target: string, options: SnapshotOptions): Promise<void> {
  const deadline = Date.now() + (options.lockWaitMs ?? 10 * 60_000);
  let delay = 100;
  let waited = false;
  for (;;) {
    let instance: DuckDBInstance | undefined;
    try {
      instance = await duckdb().DuckDBInstance.create(warehouse, { access_mode: 'READ_ONLY', threads: '1' });
    } catch (error) {
      if (!isLockError(error)) {
        throw new Error(`cannot open the warehouse ${warehouse} read-only: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (Date.now() + delay > deadline) {
        throw new Error(
          `the warehouse ${warehouse} stayed locked by another process for ${Math.round((options.lockWaitMs ?? 600_000) / 1000)} s ` +
            `(${error instanceof Error ? error.message : String(error)}); close whatever holds it open (a DuckDB shell?) and retry`,
        );
      }
      if (!waited) options.onWait?.(`warehouse ${warehouse} is locked (a publish in progress?); waiting for it`);
      waited = true;
      await sleep(delay + Math.floor(Math.random() * delay));
      delay = Math.min(delay * 2, 2000);
      continue;
    }
    try {
      rmSync(`${target}.wal`, { force: true });
      copyFileSync(warehouse, target);
      if (existsSync(`${warehouse}.wal`)) copyFileSync(`${warehouse}.wal`, `${target}.wal`);
    } finally {
      instance.closeSync();
    }
    return;
  }
}

function defaultSettings(file: string): Record<string, string> {
  const rss = parseRssLimit(process.env[childEnv.rssLimit]);
  // The SDK gives the staging instance half of the limit; the analysis instance gets half of the rest.
  return duckdbSettings({ rssLimitBytes: rss === undefined ? undefined : rss / 2, databasePath: file });
}

const quote = (text: string) => `'${text.replaceAll("'", "''")}'`;

// Why: derived extractors (rankings, curves, top_models, per_subject) read the warehouse without ever
// blocking the publisher for longer than one file copy.
export async function openWarehouseSnapshot(options: SnapshotOptions): Promise<WarehouseSnapshot> {
  const warehouse = options.warehouse;
  if (warehouse === undefined || warehouse === '') {
    throw new Error(`${childEnv.warehouse} is not set: a derived extractor needs the warehouse path (set 'warehouse' in the config)`);
  }
  if (!existsSync(warehouse) || !statSync(warehouse).isFile()) {
    throw new Error(`the warehouse ${warehouse} does not exist yet: run the raw extraction jobs first (list them in this job's 'after:')`);
  }
  const staging = process.env[childEnv.staging];
  const directory = options.directory ?? (staging ? path.dirname(path.resolve(staging)) : path.dirname(path.resolve(warehouse)));
  mkdirSync(directory, { recursive: true });
  const safeLabel = options.label.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100);
  const file = path.join(directory, `${safeLabel}.warehouse-snapshot.duckdb`);
  const cleanup = () => {
    for (const leftover of [file, `${file}.wal`]) rmSync(leftover, { force: true });
    rmSync(`${file}.tmp`, { recursive: true, force: true });
  };
  cleanup();
  await copyUnderReadLock(warehouse, file, options);

  let instance: DuckDBInstance | undefined;
  let connection: DuckDBConnection | undefined;
  try {
    if (existsSync(`${file}.wal`)) {
      // Fold the copied WAL into the copy, so the read-only attach below sees every committed row.
      const writable = await duckdb().DuckDBInstance.create(file, { threads: '1' });
      const merge = await writable.connect();
      await merge.run('CHECKPOINT');
      merge.closeSync();
      writable.closeSync();
    }
    instance = await duckdb().DuckDBInstance.create(':memory:', options.settings ?? defaultSettings(file));
    connection = await instance.connect();
    await connection.run(`ATTACH ${quote(file)} AS ${SNAPSHOT_SCHEMA} (READ_ONLY)`);
    await connection.run(`USE ${SNAPSHOT_SCHEMA}`);
  } catch (error) {
    connection?.closeSync();
    instance?.closeSync();
    cleanup();
    throw new Error(`cannot open the warehouse snapshot ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const db = instance;
  const conn = connection;
  let closed = false;

  const toObjects = (names: string[], rows: DuckDBValue[][]) =>
    rows.map((row) => Object.fromEntries(names.map((name, index) => [name, row[index] ?? null])) as Record<string, DuckDBValue>);

  return {
    connection: conn,
    file,
    async hasTable(name) {
      const reader = await conn.runAndReadAll(
        `SELECT count(*) FROM information_schema.tables WHERE table_catalog = '${SNAPSHOT_SCHEMA}' AND table_schema = 'main' AND table_name = $1`,
        [name],
      );
      return Number(reader.getRows()[0]?.[0] ?? 0) > 0;
    },
    async columns(name) {
      const reader = await conn.runAndReadAll(
        `SELECT column_name FROM information_schema.columns WHERE table_catalog = '${SNAPSHOT_SCHEMA}' AND table_schema = 'main' AND table_name = $1 ORDER BY ordinal_position`,
        [name],
      );
      return reader.getRows().map((row) => String(row[0]));
    },
    async all(sql, params) {
      const reader = await conn.runAndReadAll(sql, params);
      return toObjects(reader.columnNames(), reader.getRows());
    },
    async *stream(sql, params) {
      const result = await conn.stream(sql, params);
      const names = result.columnNames();
      for (;;) {
        const chunk = await result.fetchChunk();
        if (!chunk || chunk.rowCount === 0) break;
        yield toObjects(names, chunk.getRows());
      }
    },
    close() {
      if (closed) return;
      closed = true;
      conn.closeSync();
      db.closeSync();
      cleanup();
    },
  };
}
