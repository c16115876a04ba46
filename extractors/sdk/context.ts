// The staging session (one DuckDB connection to the run's staging file, every statement serialized)
// and the ExtractorContext built on it. Extractors only ever see the ExtractorContext interface.
import { statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import { duckdb, type DuckDBInstance } from './duckdb.js';
import type { Columns, Expectation, ExtractorContext, ExtractorLog, TableWriter } from './api.js';
import type { Channel } from './channel.js';
import { activeUnitKey, UnitLedger, type UnitStaging } from './checkpoint.js';
import { checkIdentifier, StagingTable } from './table.js';
import { checkExpectation } from './validate.js';
import { STAGING_DISABLED_COMPRESSION } from './limits.js';

/** Views the publisher recreates in the warehouse after replacing the tables. */
export const VIEWS_TABLE = '_duckvisor_views';
const VIEWS_DDL = `CREATE TABLE IF NOT EXISTS ${VIEWS_TABLE} (name VARCHAR PRIMARY KEY, sql VARCHAR NOT NULL)`;

/** The staging file's name inside DuckDB when it is attached (StagingLayout.rowGroupRows). */
const STAGING_CATALOG = 'staging';

/** How the staging file is written beyond DuckDB's settings (limits.ts SMALL_STAGING). */
export interface StagingLayout {
  /** Rows per row group (ATTACH … ROW_GROUP_SIZE); DuckDB's default when unset. */
  rowGroupRows?: number;
  /** After a group commit, evict the blocks DuckDB caches once they hold more than this many bytes (see afterCommit). */
  evictCacheAboveBytes?: number;
}

/** duckdb_memory() tag of the blocks DuckDB read or wrote for tables and keeps cached while memory_limit allows. */
const CACHED_BLOCKS_TAG = 'BASE_TABLE';
/** What stays cached however low the limit: 0.75-0.98 MiB measured with 2 to 30 checkpointed tables. */
const CACHE_FLOOR_BYTES = 1024 * 1024;
/** Room above that floor while the limit is low, for the statements that run meanwhile (see afterCommit). */
const EVICTION_HEADROOM_BYTES = 512 * 1024;
const RESTORE_ATTEMPTS = 5;
const RESTORE_RETRY_MS = 10;

/** DuckDB's accounted memory by tag (duckdb_memory()), largest first, tags holding nothing left out. */
async function memoryByTag(connection: DuckDBConnection): Promise<[string, number][]> {
  const reader = await connection.runAndReadAll('SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0 ORDER BY memory_usage_bytes DESC');
  return reader.getRows().map(([tag, bytes]) => [String(tag), Number(bytes)]);
}

/** A final checkpoint of at most this much WAL writes its rows uncompressed (see closeNow). */
const UNCOMPRESSED_LAST_CHECKPOINT_BYTES = 16 * 1024 * 1024;

function walBytes(databasePath: string): number {
  try {
    return statSync(`${databasePath}.wal`).size;
  } catch {
    return 0;
  }
}

/** Raised for statements submitted after teardown began; they never reach DuckDB. */
export class SessionClosedError extends Error {
  override name = 'SessionClosedError';
}

// Why: one owner for the staging connection, so statements never interleave and close is complete.
// Every asynchronous DuckDB call (statements, table DDL + Appender creation, Appender re-creation
// after a rollback, the memory monitor's query) goes through this object, and close() waits for
// the one in flight before closing anything: closing a connection under a running native call
// crashes the process (SIGSEGV) instead of failing the run.
export class StagingSession implements UnitStaging {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly tables = new Map<string, StagingTable>();
  private writerList: readonly StagingTable[] = [];
  private pendingDeclarations: Promise<unknown>[] = [];
  /** Table declarations whose task has not started yet and that later declarations may join. */
  private openBatch: { tables: StagingTable[]; done: Promise<Map<StagingTable, unknown>> } | undefined;
  private closing: Promise<void> | undefined;
  private monitorInFlight: Promise<unknown> = Promise.resolve();
  /** Set by the unit ledger: commits a group left open, so DDL and bookkeeping never ride in it. */
  private beforeStatement: (connection: DuckDBConnection) => Promise<void> = async () => undefined;

  private constructor(
    readonly path: string,
    private readonly instance: DuckDBInstance,
    readonly connection: DuckDBConnection,
    private readonly monitor: DuckDBConnection,
    /** When to evict cached blocks, and the memory_limit to return to (see afterCommit); undefined = never. */
    private readonly eviction: { aboveBytes: number; back: string } | undefined,
  ) {}

  /**
   * Opens (or creates) the staging file; DuckDB replays a WAL left by a killed attempt here. With a
   * `rowGroupRows` layout the file is attached to an in-memory instance, because a row group size can only
   * be given to ATTACH; it is then the connections' default database.
   */
  static async open(path: string, settings: Record<string, string>, layout: StagingLayout = {}): Promise<StagingSession> {
    let instance: DuckDBInstance | undefined;
    try {
      instance = await duckdb().DuckDBInstance.create(layout.rowGroupRows === undefined ? path : ':memory:', settings);
      if (layout.rowGroupRows !== undefined) {
        const setup = await instance.connect();
        try {
          await setup.run(`ATTACH '${path.replaceAll("'", "''")}' AS ${STAGING_CATALOG} (ROW_GROUP_SIZE ${layout.rowGroupRows})`);
        } finally {
          setup.closeSync();
        }
      }
    } catch (error) {
      instance?.closeSync();
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(
        `cannot open the staging database ${path}: ${reason}. If its .wal was damaged by a crash, move ${path}.wal aside ` +
          `(the units committed after the last checkpoint are lost and will be re-extracted), or delete the staging file to start over`,
      );
    }
    const connection = await instance.connect();
    const monitor = await instance.connect();
    if (layout.rowGroupRows !== undefined) {
      await connection.run(`USE ${STAGING_CATALOG}`);
      await monitor.run(`USE ${STAGING_CATALOG}`);
    }
    const limit = settings['memory_limit'];
    const eviction = layout.evictCacheAboveBytes !== undefined && limit !== undefined ? { aboveBytes: layout.evictCacheAboveBytes, back: limit } : undefined;
    const session = new StagingSession(path, instance, connection, monitor, eviction);
    // A global setting that DuckDB ignores when given at create(): set on the connection.
    await session.sql(`SET disabled_compression_methods = '${STAGING_DISABLED_COMPRESSION}'`);
    await session.sql(VIEWS_DDL);
    return session;
  }

  /** True once close() was called: new work is refused, work in flight is awaited. */
  get isClosing(): boolean {
    return this.closing !== undefined;
  }

  /** Runs `task` on the staging connection after every earlier task; refused once the session is closing. */
  exclusive<T>(task: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
    // A statement queued after a batch of table declarations keeps later declarations out of it (order is kept).
    this.openBatch = undefined;
    const result = this.queue.then(() => {
      if (this.closing !== undefined) throw new SessionClosedError(`the staging database ${this.path} is closing; statement not run`);
      return task(this.connection);
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  sql(text: string, params?: DuckDBValue[]): Promise<void> {
    return this.exclusive(async (connection) => {
      await connection.run(text, params);
    });
  }

  writers(): readonly StagingTable[] {
    return this.writerList;
  }

  setBeforeStatement(hook: (connection: DuckDBConnection) => Promise<void>): void {
    this.beforeStatement = hook;
  }

  /**
   * Called by the unit ledger on the connection right after a group's COMMIT. DuckDB keeps the blocks its
   * checkpoints wrote cached (tag BASE_TABLE) until memory_limit forces them out, so with an eviction layout
   * (SMALL_STAGING in limits.ts), once that cache holds more than its threshold, memory_limit is lowered to
   * what DuckDB holds besides the cache plus CACHE_FLOOR_BYTES and EVICTION_HEADROOM_BYTES, and set back:
   * DuckDB evicts unpinned blocks to meet a lower limit (it has no other call that does).
   *
   * The headroom is for the statements that run while the limit is low, setting it back among them (the
   * memory self-check's query on the monitor connection may run meanwhile): with a fixed 1 MiB limit, which
   * the floor nearly fills, setting it back failed ("Out of Memory Error: failed to allocate data of size
   * 2.0 KiB (1.0 MiB/1.0 MiB used)") in 3 of 12 long small-staging runs on a loaded machine, failing the
   * extractor. A lower limit that DuckDB refuses is ignored; setting it back is retried a few times, and the
   * extractor fails (its group already committed) when that never succeeds, rather than go on at the low limit.
   */
  async afterCommit(connection: DuckDBConnection): Promise<void> {
    if (this.eviction === undefined) return;
    // The eviction only saves memory: when DuckDB cannot even say what it holds, it is skipped.
    const byTag = await memoryByTag(connection).catch(() => undefined);
    if (byTag === undefined) return;
    let cachedBytes = 0;
    let totalBytes = 0;
    for (const [tag, bytes] of byTag) {
      totalBytes += bytes;
      if (tag === CACHED_BLOCKS_TAG) cachedBytes += bytes;
    }
    if (cachedBytes <= this.eviction.aboveBytes) return;
    const lowKiB = Math.ceil((totalBytes - cachedBytes + CACHE_FLOOR_BYTES + EVICTION_HEADROOM_BYTES) / 1024);
    await connection.run(`SET memory_limit = '${lowKiB}KiB'`).catch(() => undefined);
    for (let attempt = 1; ; attempt++) {
      try {
        await connection.run(`SET memory_limit = '${this.eviction.back}'`);
        return;
      } catch (error) {
        if (attempt >= RESTORE_ATTEMPTS) {
          throw new Error(`the staging database ${this.path}: memory_limit could not be set back to ${this.eviction.back} after evicting its cached blocks (${error instanceof Error ? error.message : String(error)})`);
        }
        await sleep(RESTORE_RETRY_MS * attempt);
      }
    }
  }

  /**
   * Registers a table; its DDL and Appender creation are queued (rows appended meanwhile wait in JS).
   * Tables declared one after the other (no other statement queued in between) share one task: their
   * CREATE statements and the column check go to DuckDB as one query, instead of three round trips
   * per table while the extractor waits for the first unit to start.
   */
  declare(table: StagingTable): void {
    if (this.tables.has(table.name)) throw new Error(`table '${table.name}' is declared twice; call ctx.table() once per table`);
    this.tables.set(table.name, table);
    this.writerList = [...this.tables.values()];
    let batch = this.openBatch;
    if (batch === undefined) {
      const tables: StagingTable[] = [];
      const done = this.exclusive(async (connection) => {
        if (this.openBatch?.tables === tables) this.openBatch = undefined;
        await this.beforeStatement(connection);
        return createTables(connection, tables);
      });
      done.catch(() => undefined);
      batch = { tables, done };
      // exclusive() closed any open batch; this one stays open until the next task is queued.
      this.openBatch = batch;
    }
    batch.tables.push(table);
    const ready = batch.done.then((failures) => {
      const failure = failures.get(table);
      if (failure !== undefined) throw failure;
    });
    ready.catch(() => undefined);
    this.pendingDeclarations.push(
      ready.catch((error: unknown) => {
        if (error instanceof SessionClosedError) throw error;
        throw new Error(`table '${table.name}': cannot create it in staging: ${error instanceof Error ? error.message : String(error)}`);
      }),
    );
  }

  /** Records a view for the publisher to create in the warehouse. */
  declareView(name: string, sql: string): void {
    const saved = this.exclusive(async (connection) => {
      await this.beforeStatement(connection);
      await connection.run(`INSERT OR REPLACE INTO ${VIEWS_TABLE} VALUES ($1, $2)`, [name, sql]);
    });
    saved.catch(() => undefined);
    this.pendingDeclarations.push(
      saved.catch((error: unknown) => {
        if (error instanceof SessionClosedError) throw error;
        throw new Error(`view '${name}': cannot record it: ${error instanceof Error ? error.message : String(error)}`);
      }),
    );
  }

  async declarationsSettled(): Promise<void> {
    const pending = this.pendingDeclarations;
    await Promise.all(pending);
  }

  /** Commits rows appended outside units (auto-commit). */
  async flushOutsideUnits(): Promise<void> {
    await this.declarationsSettled();
    for (const table of this.tables.values()) table.flush();
  }

  /** Output tables in staging (all attempts), with their row counts; SDK tables excluded. */
  tableRowCounts(): Promise<Record<string, number>> {
    return this.exclusive(async (connection) => {
      const names = await connection.runAndReadAll(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_duckvisor\\_%' ESCAPE '\\' ORDER BY table_name`,
      );
      const counts: Record<string, number> = {};
      const tables = names.getRows().map(([name]) => String(name));
      if (tables.length === 0) return counts;
      // One query for all tables (a round trip each added up at the end of every run).
      const reader = await connection.runAndReadAll(
        tables.map((name, index) => `SELECT ${index} AS i, count(*) AS n FROM "${name.replace(/"/g, '""')}"`).join(' UNION ALL '),
      );
      for (const [index, rows] of reader.getRows()) counts[tables[Number(index)]!] = Number(rows ?? 0);
      return counts;
    });
  }

  /** Bytes DuckDB holds, for the memory self-check (a separate connection, so it never waits on a unit). */
  async duckdbMemoryBytes(): Promise<number> {
    if (this.closing !== undefined) return 0;
    const query = this.monitor.runAndReadAll('SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()');
    this.monitorInFlight = query.catch(() => undefined);
    const reader = await query;
    return Number(reader.getRows()[0]?.[0] ?? 0);
  }

  /** DuckDB's memory by tag (debug trace). */
  async duckdbMemoryByTag(): Promise<string> {
    if (this.closing !== undefined) return '';
    const byTag = await memoryByTag(this.monitor);
    return byTag.map(([tag, bytes]) => `${tag}=${Math.round(bytes / 104857.6) / 10}`).join(' ');
  }

  /**
   * Flushes and closes every writer, checkpoints (merging the WAL into the file), and releases the file lock.
   * Safe to call while the extractor still has work queued: that work is refused, the call in flight is
   * awaited, then Appenders, connections and the instance are closed in that order. Idempotent.
   */
  close(options: { checkpoint: boolean }): Promise<void> {
    this.closing ??= this.closeNow(options);
    return this.closing;
  }

  private async closeNow(options: { checkpoint: boolean }): Promise<void> {
    // Tasks queued behind the running one see `closing` and return without touching DuckDB.
    await this.queue;
    await this.monitorInFlight;
    try {
      for (const table of this.tables.values()) {
        if (options.checkpoint) table.close();
        else table.abandon();
      }
      if (options.checkpoint) {
        // The last checkpoint writes the rows committed since the previous one, at most about a WAL's worth
        // (DuckDB checkpoints on its own every 16 MiB of WAL). Their compression analysis was half of a small
        // run's final checkpoint (~40 of ~80 ms at 10,000 rows), for a file the publisher reads once; so
        // when the WAL is small they are written uncompressed (the warehouse compresses what it stores).
        if (walBytes(this.path) <= UNCOMPRESSED_LAST_CHECKPOINT_BYTES) await this.connection.run("SET force_compression = 'uncompressed'");
        await this.connection.run('CHECKPOINT');
      }
    } finally {
      for (const table of this.tables.values()) table.abandon();
      this.monitor.closeSync();
      this.connection.closeSync();
      this.instance.closeSync();
    }
  }
}

/**
 * Creates the tables (CREATE TABLE IF NOT EXISTS) and opens their Appenders: one query for all of them,
 * or, when it fails, table by table so that each failure names its table. Returns the failures by table.
 */
async function createTables(connection: DuckDBConnection, tables: readonly StagingTable[]): Promise<Map<StagingTable, unknown>> {
  const failures = new Map<StagingTable, unknown>();
  let columns: Map<string, string[]> | undefined;
  try {
    const reader = await connection.runAndReadAll(`${tables.map((table) => table.createStatement()).join(';\n')};\n${StagingTable.columnsQuery(tables.map((table) => table.name))}`);
    columns = new Map();
    for (const [name, column] of reader.getRows()) {
      const list = columns.get(String(name)) ?? [];
      list.push(String(column));
      columns.set(String(name), list);
    }
  } catch {
    columns = undefined;
  }
  for (const table of tables) {
    try {
      if (columns !== undefined) await table.openWithColumns(connection, columns.get(table.name) ?? []);
      else {
        await connection.run(table.createStatement());
        await table.open(connection);
      }
    } catch (error) {
      failures.set(table, error);
    }
  }
  return failures;
}

export interface RunMeta {
  extractor: string;
  runId: string;
  job: string;
  attempt: number;
  warehouse: string | undefined;
  batchRows: number;
}

/** What the runner needs back from the context after the extractor returned. */
export interface ContextState {
  readonly expectation: Expectation | undefined;
  readonly skipped: { key: string; error: string }[];
  readonly ledger: UnitLedger;
}

/** The extractor's log lines, sent over its channel (also before its context exists: the prepare step). */
export function channelLog(channel: Channel): ExtractorLog {
  return {
    debug: (msg) => channel.log('debug', msg),
    info: (msg) => channel.log('info', msg),
    warn: (msg) => channel.log('warn', msg),
    error: (msg) => channel.log('error', msg),
  };
}

// Why: assembles the ExtractorContext surface (api.ts) from the session, the ledger and the channel.
export function createContext<Options>(
  options: Options,
  meta: RunMeta,
  session: StagingSession,
  ledger: UnitLedger,
  channel: Channel,
): { context: ExtractorContext<Options>; state: ContextState } {
  const state: { expectation: Expectation | undefined; skipped: { key: string; error: string }[]; ledger: UnitLedger } = {
    expectation: undefined,
    skipped: [],
    ledger,
  };
  let lastDone = -Infinity;
  const log = channelLog(channel);
  const rowsAppended = (): number => session.writers().reduce((sum, table) => sum + table.rowsAppended, 0);

  const context: ExtractorContext<Options> = {
    options,
    runId: meta.runId,
    job: meta.job,
    attempt: meta.attempt,
    warehouse: meta.warehouse,
    log,
    progress(done, total, unit) {
      if (typeof done !== 'number' || !Number.isFinite(done) || done < 0) {
        throw new TypeError(`ctx.progress(done, total, unit): done must be a non-negative number (got ${JSON.stringify(done)})`);
      }
      if (done < lastDone) {
        throw new RangeError(`ctx.progress(): done went backwards from ${lastDone} to ${done}; it must not decrease`);
      }
      lastDone = done;
      channel.progress(done, total, unit || 'items', rowsAppended());
    },
    table(name: string, columns: Columns): TableWriter {
      const unit = activeUnitKey();
      if (unit !== undefined) {
        throw new Error(`ctx.table('${name}') was called inside ctx.unit('${unit}'): declare tables before the units that write them`);
      }
      const table = new StagingTable(name, columns, meta.batchRows);
      session.declare(table);
      return table;
    },
    view(name: string, sql: string): void {
      checkIdentifier('view', name);
      if (typeof sql !== 'string' || sql.trim() === '') throw new TypeError(`ctx.view('${name}', sql): sql must be a non-empty SELECT statement`);
      session.declareView(name, sql);
    },
    unit: (key, work) => ledger.run(key, work),
    isDone: (key) => ledger.isDone(key),
    skip(key, error) {
      state.skipped.push({ key: String(key).slice(0, 1000), error: String(error).slice(0, 4000) });
      channel.log('warn', `skipped unit ${key}: ${error}`);
    },
    expect(expectation) {
      state.expectation = checkExpectation(expectation);
    },
    get stopRequested() {
      return channel.stopRequested;
    },
  };
  return { context, state };
}
