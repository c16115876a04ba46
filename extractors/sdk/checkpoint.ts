// Exactly-once units. `ctx.unit(key, work)` opens ONE explicit transaction on the staging connection,
// runs `work` (whose rows the table writers flush into that transaction as batches fill), flushes the
// rest, inserts the checkpoint row for `key` into _duckvisor_units, and commits. DuckDB writes the
// commit to its WAL as one record, so a SIGKILL at any point leaves the whole unit or none of it;
// an error rolls it back. A resumed attempt loads the committed keys and skips them.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import type { StagingTable } from './table.js';

/** The checkpoint table in every staging database. */
export const UNITS_TABLE = '_duckvisor_units';
export const UNITS_DDL = `CREATE TABLE IF NOT EXISTS ${UNITS_TABLE} (key VARCHAR PRIMARY KEY, committed_at TIMESTAMP NOT NULL, rows_json VARCHAR NOT NULL)`;

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
}

const currentUnit = new AsyncLocalStorage<string>();

// Why: table declarations must not run inside a unit's transaction (DDL stays out of streaming).
export function activeUnitKey(): string | undefined {
  return currentUnit.getStore();
}

// Why: the per-unit commit protocol and the set of keys committed by this and earlier attempts.
export class UnitLedger {
  private readonly committed: Set<string>;
  private queue: Promise<unknown> = Promise.resolve();
  private committedThisAttempt = 0;

  private constructor(
    private readonly staging: UnitStaging,
    committed: Iterable<string>,
  ) {
    this.committed = new Set(committed);
  }

  /** Creates the checkpoint table if needed and loads the keys earlier attempts committed. */
  static async open(staging: UnitStaging): Promise<UnitLedger> {
    await staging.sql(UNITS_DDL);
    const reader = await staging.exclusive((connection) => connection.runAndReadAll(`SELECT key FROM ${UNITS_TABLE}`));
    const keys = reader.getColumns()[0] ?? [];
    return new UnitLedger(staging, keys.map((key) => String(key)));
  }

  /** Keys committed in total (all attempts). */
  get committedUnits(): number {
    return this.committed.size;
  }

  /** Keys committed by this attempt. */
  get committedByThisAttempt(): number {
    return this.committedThisAttempt;
  }

  isDone(key: string): boolean {
    return this.committed.has(key);
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
    const result = this.queue.then(() => this.runNow(key, work));
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async runNow(key: string, work: () => Promise<void>): Promise<boolean> {
    await this.staging.declarationsSettled();
    if (this.committed.has(key)) return false;
    const writers = this.staging.writers();
    // Rows appended outside units commit now, so they never ride in (or roll back with) this unit.
    for (const writer of writers) writer.flush();
    const appendedBefore = new Map(writers.map((writer) => [writer, writer.rowsAppended]));
    await this.staging.sql('BEGIN TRANSACTION');
    try {
      await currentUnit.run(key, work);
      const rows: Record<string, number> = {};
      for (const writer of writers) {
        writer.flush();
        const added = writer.rowsAppended - (appendedBefore.get(writer) ?? 0);
        if (added > 0) rows[writer.name] = added;
      }
      await this.staging.sql(`INSERT INTO ${UNITS_TABLE} VALUES ($1, current_timestamp, $2)`, [key, JSON.stringify(rows)]);
      await this.staging.sql('COMMIT');
    } catch (error) {
      await this.rollback(appendedBefore);
      throw error;
    }
    this.committed.add(key);
    this.committedThisAttempt++;
    return true;
  }

  private async rollback(appendedBefore: Map<StagingTable, number>): Promise<void> {
    try {
      await this.staging.sql('ROLLBACK');
    } catch {
      // The transaction may already be aborted by the failing statement; nothing is committed either way.
    }
    for (const [writer, before] of appendedBefore) {
      writer.discard(before);
      // The Appender is recreated in turn with every other DuckDB call; during teardown it is not needed.
      await this.staging.exclusive((connection) => writer.reopenAppender(connection)).catch(() => undefined);
    }
  }
}
