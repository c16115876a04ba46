// Exactly-once units, committed in groups. `ctx.unit(key, work)` runs `work` inside the staging
// connection's open transaction (BEGIN when none is open); the table writers keep the unit's rows
// apart from the completed units before it (table.ts), so a unit that fails is dropped without
// touching them. When the unit succeeds its checkpoint row joins the group; the group commits — every
// row of its units plus their checkpoint rows, in ONE transaction — once it holds GROUP_MAX_UNITS
// units, or its rows reach the row budget, or GROUP_MAX_MS have passed (also when the extractor sits
// idle between units). DuckDB writes a commit to its WAL as one record, so a SIGKILL at any point
// leaves whole units or none of them; a resumed attempt loads the committed keys and skips them.
// Only a unit whose own rows had to enter the transaction (more than UNIT_CACHE_LIMIT_ROWS in one
// table) and then fails needs a ROLLBACK: the completed units of its group go with it, the run fails
// with a message that says so, the key is recorded, and a retry runs that unit in a transaction of
// its own.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import { duckdb } from './duckdb.js';
import type { StagingTable } from './table.js';

/** A group commits once it holds this many units… */
export const GROUP_MAX_UNITS = 500;
/** …or this long after its first unit began… */
export const GROUP_MAX_MS = 200;
/** …or when its rows reach this many batches (rows of all tables, counted per unit). */
export const GROUP_MAX_BATCHES = 4;

/** The checkpoint table in every staging database. */
export const UNITS_TABLE = '_duckvisor_units';
export const UNITS_DDL = `CREATE TABLE IF NOT EXISTS ${UNITS_TABLE} (key VARCHAR PRIMARY KEY, committed_at TIMESTAMP NOT NULL, rows_json VARCHAR NOT NULL)`;
/** Units that once failed after their rows entered a shared transaction: a retry runs each alone. */
export const ISOLATED_TABLE = '_duckvisor_isolated_units';
const ISOLATED_DDL = `CREATE TABLE IF NOT EXISTS ${ISOLATED_TABLE} (key VARCHAR PRIMARY KEY, failed_at TIMESTAMP NOT NULL, error VARCHAR NOT NULL)`;

/** What the ledger needs from the staging session. */
export interface UnitStaging {
  readonly connection: DuckDBConnection;
  /** Runs one statement, serialized with every other statement of the session. */
  sql(text: string, params?: DuckDBValue[]): Promise<void>;
  /** Runs `task` on the connection, serialized with every statement; rejects once the session is closing. */
  exclusive<T>(task: (connection: DuckDBConnection) => Promise<T>): Promise<T>;
  /** Every declared table writer. */
  writers(): readonly StagingTable[];
  /** Resolves when every declared table's DDL has run (rejects with the first DDL error). */
  declarationsSettled(): Promise<void>;
  /** Called on the connection before DDL or other bookkeeping statements, so they never ride in a group. */
  setBeforeStatement(hook: (connection: DuckDBConnection) => Promise<void>): void;
  /** Called on the connection after each group's COMMIT (the session's memory upkeep). */
  afterCommit(connection: DuckDBConnection): Promise<void>;
}

/** A completed unit waiting in the open transaction for its group's COMMIT. */
interface PendingUnit {
  key: string;
  rows: Record<string, number>;
}

/** The group's units were rolled back with a failing unit; the run must end so a retry redoes them. */
export class GroupRolledBackError extends Error {
  override name = 'GroupRolledBackError';
}

const currentUnit = new AsyncLocalStorage<string>();

/**
 * The group's checkpoint rows, into the open transaction. Through an Appender rather than an INSERT
 * with two parameters per unit: binding those cost ~40 ms per group of 200 units, the Appender ~2 ms.
 * One committed_at per group (the transaction it commits in), in microseconds so groups stay distinct.
 */
async function appendCheckpointRows(connection: DuckDBConnection, units: readonly PendingUnit[]): Promise<void> {
  const appender = await connection.createAppender(UNITS_TABLE);
  try {
    const committedAt = new (duckdb().DuckDBTimestampValue)(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)));
    for (const unit of units) {
      appender.appendVarchar(unit.key);
      appender.appendTimestamp(committedAt);
      appender.appendVarchar(JSON.stringify(unit.rows));
      appender.endRow();
    }
    appender.flushSync();
  } finally {
    try {
      appender.closeSync();
    } catch {
      // Only after a failed flush, whose error is the one reported (the caller rolls the group back).
    }
  }
}

// Why: table declarations must not run inside a unit's transaction (DDL stays out of streaming).
export function activeUnitKey(): string | undefined {
  return currentUnit.getStore();
}

// Why: the grouped commit protocol and the set of keys committed by this and earlier attempts.
export class UnitLedger {
  private readonly committed: Set<string>;
  private readonly isolated: Set<string>;
  private queue: Promise<unknown> = Promise.resolve();
  private committedThisAttempt = 0;
  /** The open transaction's completed units, in order. */
  private pending: PendingUnit[] = [];
  private readonly pendingKeys = new Set<string>();
  private transactionOpen = false;
  private groupStartedAt = 0;
  private groupRows = 0;
  /** A unit is being run (from its start to its group decision): bookkeeping statements must not commit meanwhile. */
  private inRun = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** A failure of the idle commit, raised by the next call. */
  private deferredError: Error | undefined;
  /** Every writer's rowsAppended after the last unit ended, to notice rows appended between units. */
  private appendedAtUnitEnd = new Map<StagingTable, number>();

  private constructor(
    private readonly staging: UnitStaging,
    committed: Iterable<string>,
    isolated: Iterable<string>,
    private readonly groupRowBudget: number,
  ) {
    this.committed = new Set(committed);
    this.isolated = new Set(isolated);
    staging.setBeforeStatement((connection) => (this.inRun ? Promise.resolve() : this.commitOn(connection)));
  }

  /** Creates the checkpoint tables if needed and loads the keys earlier attempts committed (or isolated). */
  static async open(staging: UnitStaging, batchRows = 10_000): Promise<UnitLedger> {
    await staging.sql(UNITS_DDL);
    await staging.sql(ISOLATED_DDL);
    const read = async (sql: string): Promise<string[]> => {
      const reader = await staging.exclusive((connection) => connection.runAndReadAll(sql));
      return (reader.getColumns()[0] ?? []).map((key) => String(key));
    };
    return new UnitLedger(staging, await read(`SELECT key FROM ${UNITS_TABLE}`), await read(`SELECT key FROM ${ISOLATED_TABLE}`), GROUP_MAX_BATCHES * batchRows);
  }

  /** Keys committed in total (all attempts). */
  get committedUnits(): number {
    return this.committed.size;
  }

  /** Keys committed by this attempt. */
  get committedByThisAttempt(): number {
    return this.committedThisAttempt;
  }

  /** Completed units not committed yet (they commit with their group). */
  get pendingUnits(): number {
    return this.pending.length;
  }

  /** True for committed keys and for completed units waiting for their group's COMMIT (running them again would duplicate rows). */
  isDone(key: string): boolean {
    return this.committed.has(key) || this.pendingKeys.has(key);
  }

  /** Units run one at a time (one connection = one transaction); calls made meanwhile wait their turn. */
  run(key: string, work: () => Promise<void>): Promise<boolean> {
    if (typeof key !== 'string' || key.length === 0) {
      return Promise.reject(new TypeError(`ctx.unit(key, work): key must be a non-empty string (got ${JSON.stringify(key)})`));
    }
    const outer = currentUnit.getStore();
    if (outer !== undefined) {
      return Promise.reject(new Error(`ctx.unit('${key}') was called inside ctx.unit('${outer}'): units cannot nest`));
    }
    return this.enqueue(() => this.runNow(key, work));
  }

  /** Commits the open group (the extractor finished, or is stopping cleanly). */
  finish(): Promise<void> {
    return this.enqueue(() => this.commit());
  }

  /**
   * After a failure elsewhere (a signal, the extractor's own error): commits the completed units of the
   * open group when no unit is in flight, so a retry does not redo them. Never waits for a unit.
   */
  async salvage(): Promise<void> {
    this.clearIdleTimer();
    if (this.inRun || this.pending.length === 0) return;
    await this.staging.exclusive((connection) => this.commitOn(connection));
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const result = this.queue.then(() => {
      if (this.deferredError !== undefined) throw this.deferredError;
      return task();
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  private clearIdleTimer(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private commit(): Promise<void> {
    this.clearIdleTimer();
    if (!this.transactionOpen && this.pending.length === 0) return Promise.resolve();
    return this.staging.exclusive((connection) => this.commitOn(connection));
  }

  /** Flushes every writer into the open transaction, adds the group's checkpoint rows, and commits. */
  private async commitOn(connection: DuckDBConnection): Promise<void> {
    if (!this.transactionOpen) return;
    this.clearIdleTimer();
    const units = this.pending;
    try {
      for (const writer of this.staging.writers()) writer.flush();
      if (units.length > 0) await appendCheckpointRows(connection, units);
      await connection.run('COMMIT');
    } catch (error) {
      await connection.run('ROLLBACK').catch(() => undefined);
      this.transactionOpen = false;
      this.dropPending();
      for (const writer of this.staging.writers()) {
        writer.discard(writer.rowsAppended - writer.pendingRows);
        await writer.reopenAppender(connection).catch(() => undefined);
      }
      this.rememberAppended();
      throw new GroupRolledBackError(
        `committing ${units.length} unit(s) failed and they were rolled back (${error instanceof Error ? error.message : String(error)}); a retry resumes after the last committed unit`,
      );
    }
    this.transactionOpen = false;
    for (const unit of units) this.committed.add(unit.key);
    this.committedThisAttempt += units.length;
    this.dropPending();
    this.rememberAppended();
    await this.staging.afterCommit(connection);
  }

  private dropPending(): void {
    this.pending = [];
    this.pendingKeys.clear();
    this.groupRows = 0;
  }

  private rememberAppended(): void {
    for (const writer of this.staging.writers()) this.appendedAtUnitEnd.set(writer, writer.rowsAppended);
  }

  private async runNow(key: string, work: () => Promise<void>): Promise<boolean> {
    this.inRun = true;
    try {
      return await this.runUnit(key, work);
    } finally {
      this.inRun = false;
    }
  }

  private async runUnit(key: string, work: () => Promise<void>): Promise<boolean> {
    await this.staging.declarationsSettled();
    if (this.isDone(key)) return false;
    const writers = this.staging.writers();
    const appendedBetweenUnits = writers.some((writer) => writer.rowsAppended !== (this.appendedAtUnitEnd.get(writer) ?? 0));
    // Rows appended outside units commit now, so they never ride in (or roll back with) a unit; an
    // isolated unit starts a transaction of its own.
    if (this.transactionOpen && (appendedBetweenUnits || this.isolated.has(key))) await this.commit();
    if (!this.transactionOpen) {
      if (appendedBetweenUnits) for (const writer of writers) writer.flush();
      await this.staging.sql('BEGIN TRANSACTION');
      this.transactionOpen = true;
      this.groupStartedAt = performance.now();
    }
    this.rememberAppended();
    this.clearIdleTimer();
    const shared = this.pending.length > 0;
    for (const writer of writers) writer.beginUnit(shared);
    const rows: Record<string, number> = {};
    let unitRows = 0;
    try {
      await currentUnit.run(key, work);
      for (const writer of writers) {
        const added = writer.unitRows;
        if (added > 0) rows[writer.name] = added;
        unitRows += added;
        writer.endUnit();
      }
    } catch (error) {
      await this.dropFailedUnit(key, writers, error);
      throw error;
    }
    this.groupRows += unitRows;
    this.pending.push({ key, rows });
    this.pendingKeys.add(key);
    this.rememberAppended();
    if (this.pending.length >= GROUP_MAX_UNITS || this.groupRows >= this.groupRowBudget || performance.now() - this.groupStartedAt >= GROUP_MAX_MS || this.isolated.has(key)) {
      await this.commit();
    } else {
      this.scheduleIdleCommit();
    }
    return true;
  }

  /** Commits a group left open when no unit follows soon (the extractor is busy elsewhere or idle). */
  private scheduleIdleCommit(): void {
    const remaining = Math.max(0, GROUP_MAX_MS - (performance.now() - this.groupStartedAt));
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      void this.enqueue(() => this.commit()).catch((error: unknown) => {
        this.deferredError ??= error instanceof Error ? error : new Error(String(error));
      });
    }, remaining);
    this.idleTimer.unref();
  }

  /** A unit failed: drop its rows, keeping the group's completed units, or roll the whole group back when that is impossible. */
  private async dropFailedUnit(key: string, writers: readonly StagingTable[], cause: unknown): Promise<void> {
    if (writers.every((writer) => writer.unitRemovable)) {
      for (const writer of writers) writer.abortUnit();
      this.rememberAppended();
      this.scheduleIdleCommit();
      return;
    }
    const lost = this.pending.map((unit) => unit.key);
    const pendingRows = (name: string): number => this.pending.reduce((sum, unit) => sum + (unit.rows[name] ?? 0), 0);
    const appendedBefore = new Map(writers.map((writer) => [writer, writer.rowsAppended - writer.unitRows - pendingRows(writer.name)]));
    await this.rollback(writers, appendedBefore);
    if (lost.length === 0) return;
    // The completed units of the group went with the ROLLBACK: record the unit so that a retry runs it alone, then end the run.
    const reason = cause instanceof Error ? cause.message : String(cause);
    await this.staging
      .sql(`INSERT OR REPLACE INTO ${ISOLATED_TABLE} VALUES ($1, current_timestamp, $2)`, [key, reason.slice(0, 4000)])
      .catch(() => undefined);
    this.isolated.add(key);
    const error = new GroupRolledBackError(
      `unit '${key}' failed after more than its rows had entered the transaction it shared with ${lost.length} completed unit(s) ` +
        `(${lost[0]}${lost.length > 1 ? ` … ${lost[lost.length - 1]}` : ''}); all were rolled back. A retry resumes after the last committed unit ` +
        `and runs '${key}' in a transaction of its own. The unit's error: ${reason}`,
    );
    this.deferredError = error;
    throw error;
  }

  private async rollback(writers: readonly StagingTable[], appendedBefore: Map<StagingTable, number>): Promise<void> {
    this.clearIdleTimer();
    try {
      await this.staging.sql('ROLLBACK');
    } catch {
      // The transaction may already be aborted by the failing statement; nothing is committed either way.
    }
    this.transactionOpen = false;
    this.dropPending();
    for (const writer of writers) {
      writer.discard(appendedBefore.get(writer) ?? writer.rowsAppended);
      // The Appender is recreated in turn with every other DuckDB call; during teardown it is not needed.
      await this.staging.exclusive((connection) => writer.reopenAppender(connection)).catch(() => undefined);
    }
    this.rememberAppended();
  }
}
