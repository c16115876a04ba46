// The streaming table writer: rows go into a 2048-row DuckDB data chunk, full chunks go to a DuckDB
// Appender on the staging connection, and the Appender is flushed every `batch_rows` rows. Memory
// is therefore bounded by one chunk plus one batch per table, however many rows an extractor writes.
// A flush lands in whatever transaction the connection has open: a group of units' (see checkpoint.ts)
// or, outside units, an auto-committed one. The table's DDL runs once, when it is declared.
//
// Several units share one transaction, so a failing unit must be removable without a ROLLBACK: inside
// a unit the writer keeps the unit's rows apart from the rows of the completed units before it. The
// chunk may start with earlier units' rows (below `unitMark`); the Appender's cache holds rows of
// earlier units or of the current unit, never both (it is flushed into the transaction first). A failed
// unit is then dropped by truncating the chunk and clearing the cache. Only a unit that outgrows the
// cache limit has to put its own rows into the transaction (`unitRowsInTransaction`); its failure
// needs a ROLLBACK of the whole group, which the ledger handles.
import type { DuckDBAppender, DuckDBConnection, DuckDBType, DuckDBVector } from '@duckdb/node-api';
import { duckdb, type DuckDBDataChunk, type DuckDBTimestampValue } from './duckdb.js';
import type { CellValue, Columns, TableWriter } from './api.js';

/** DuckDB's vector size: the most rows one data chunk holds. */
const CHUNK_ROWS = 2048;
/** DuckDB's Appender commits on its own after this many buffered rows; batches must stay below it. */
export const MAX_BATCH_ROWS = 200_000;
export const DEFAULT_BATCH_ROWS = 10_000;
/** Most rows a unit keeps in the Appender's cache while earlier units share its transaction (below DuckDB's own auto-flush). */
export const UNIT_CACHE_LIMIT_ROWS = MAX_BATCH_ROWS - 2 * 2048;

const identifierPattern = /^[A-Za-z_][A-Za-z0-9_]*$/;

// Why: table and column names end up in SQL; only plain identifiers are accepted, with a clear error.
export function checkIdentifier(kind: string, name: string): void {
  if (!identifierPattern.test(name) || name.length > 120) {
    throw new Error(`${kind} name ${JSON.stringify(name)} is not a plain identifier (letters, digits, _; not starting with a digit)`);
  }
  if (kind === 'table' && name.toLowerCase().startsWith('_duckvisor_')) {
    throw new Error(`table name ${JSON.stringify(name)} is reserved: names starting with _duckvisor_ belong to the SDK`);
  }
}

// Why: `batch_rows` is a job option; validate it where it is used.
export function parseBatchRows(value: unknown): number {
  if (value === undefined) return DEFAULT_BATCH_ROWS;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_BATCH_ROWS) {
    throw new Error(`option 'batch_rows' must be an integer between 1 and ${MAX_BATCH_ROWS} (got ${JSON.stringify(value)})`);
  }
  return value;
}

type ChunkConverter = (value: CellValue) => unknown;

function describe(value: CellValue): string {
  if (value instanceof Date) return `Date ${String(value)}`;
  return `${typeof value} ${typeof value === 'bigint' ? `${value}n` : JSON.stringify(value)}`;
}

function toInteger(value: CellValue): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number(value);
  throw new TypeError(`expected an integer, got ${describe(value)}`);
}

function toBigInt(value: CellValue): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  if (typeof value === 'boolean') return value ? 1n : 0n;
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return BigInt(value.trim());
  throw new TypeError(`expected an integer, got ${describe(value)}`);
}

function toDouble(value: CellValue): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'string') {
    const parsed = Number(value);
    if (value.trim() !== '' && !Number.isNaN(parsed)) return parsed;
    if (/^(nan|-?inf(inity)?)$/i.test(value.trim())) return Number(value.trim().replace(/^(-?)inf$/i, '$1Infinity'));
  }
  throw new TypeError(`expected a number, got ${describe(value)}`);
}

function toBoolean(value: CellValue): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0;
  if (value === 'true' || value === 'false') return value === 'true';
  throw new TypeError(`expected a boolean, got ${describe(value)}`);
}

/** TIMESTAMP accepts a Date, epoch milliseconds (number, MLflow's unit), epoch microseconds (bigint) or an ISO string. */
function toTimestampMicros(value: CellValue): { micros: bigint } {
  if (value instanceof Date) {
    const ms = value.getTime();
    if (Number.isNaN(ms)) throw new TypeError('expected a valid Date, got Invalid Date');
    return { micros: BigInt(ms) * 1000n };
  }
  if (typeof value === 'number' && Number.isFinite(value)) return { micros: BigInt(Math.round(value * 1000)) };
  if (typeof value === 'bigint') return { micros: value };
  if (typeof value === 'string') {
    const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value.replace(' ', 'T')}Z`);
    if (!Number.isNaN(ms)) return { micros: BigInt(ms) * 1000n };
  }
  throw new TypeError(`expected a timestamp (Date, epoch ms, or ISO string), got ${describe(value)}`);
}

function toText(value: CellValue): string {
  if (typeof value === 'string') return value;
  if (value instanceof Date) return value.toISOString();
  return String(value);
}

/** Column types written through data chunks (fast path); everything else goes row by row with casts. */
function chunkConverter(type: DuckDBType): ChunkConverter | undefined {
  const { DuckDBTypeId } = duckdb();
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return toBoolean;
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.INTEGER:
      return toInteger;
    case DuckDBTypeId.BIGINT:
      return toBigInt;
    case DuckDBTypeId.FLOAT:
    case DuckDBTypeId.DOUBLE:
      return toDouble;
    case DuckDBTypeId.TIMESTAMP:
      return toTimestampMicros;
    case DuckDBTypeId.VARCHAR:
      return toText;
    default:
      return undefined;
  }
}

/** Row path: a conversion (may throw) and the typed Appender call that stores its result. */
interface RowColumn {
  convert(value: CellValue): unknown;
  put(appender: DuckDBAppender, converted: unknown): void;
}

/** Typed appends for the types the chunk path knows; DuckDB casts strings/numbers for the rest (DATE, DECIMAL, UUID, ...). */
function rowColumn(type: DuckDBType): RowColumn {
  const { DuckDBTypeId, DuckDBTimestampValue } = duckdb();
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return { convert: toBoolean, put: (a, v) => a.appendBoolean(v as boolean) };
    case DuckDBTypeId.BIGINT:
      return { convert: toBigInt, put: (a, v) => a.appendBigInt(v as bigint) };
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.INTEGER:
      return { convert: toInteger, put: (a, v) => a.appendInteger(v as number) };
    case DuckDBTypeId.FLOAT:
    case DuckDBTypeId.DOUBLE:
      return { convert: toDouble, put: (a, v) => a.appendDouble(v as number) };
    case DuckDBTypeId.TIMESTAMP:
      return { convert: (v) => new DuckDBTimestampValue(toTimestampMicros(v).micros), put: (a, v) => a.appendTimestamp(v as DuckDBTimestampValue) };
    case DuckDBTypeId.VARCHAR:
      return { convert: toText, put: (a, v) => a.appendVarchar(v as string) };
    default:
      return {
        convert: (v) => (v instanceof Date ? v.toISOString() : v),
        put: (a, v) => {
          if (typeof v === 'boolean') a.appendBoolean(v);
          else if (typeof v === 'bigint') a.appendBigInt(v);
          else if (typeof v === 'number') a.appendDouble(v);
          else a.appendVarchar(String(v));
        },
      };
  }
}

// Why: the one way extractors write rows; streaming, bounded, transaction-aware (see file header).
export class StagingTable implements TableWriter {
  readonly name: string;
  readonly columns: Columns;
  private readonly columnNames: string[];
  private appender: DuckDBAppender | undefined;
  private types: DuckDBType[] = [];
  private converters: ChunkConverter[] | undefined;
  private rowColumns: RowColumn[] = [];
  private readonly rowValues: unknown[] = [];
  private chunk: DuckDBDataChunk | undefined;
  private vectors: DuckDBVector[] = [];
  private chunkRows = 0;
  /** Rows appended before the table's DDL finished; drained on open. */
  private early: (readonly CellValue[])[] = [];
  /** Rows handed to the appender or the chunk but not yet flushed into the database. */
  private unflushed = 0;
  private appended = 0;
  /** Set by discard(): the Appender was released and reopenAppender() must replace it. */
  private reopenPending = false;
  /** Unit tracking (see the file header); meaningful while `unitActive`. */
  private unitActive = false;
  private unitAppendedBefore = 0;
  /** Chunk index where the current unit's rows begin (rows below it belong to earlier units). */
  private unitMark = 0;
  /** The current unit's rows that are in the chunk, to re-write them after the earlier rows are moved out. */
  private unitRowsInChunk: (readonly CellValue[])[] = [];
  /** Rows in the Appender's cache (pushed, not yet flushed), and how many of them are the current unit's. */
  private cacheRows = 0;
  private cacheUnitRows = 0;
  /** The current unit's rows reached the open transaction (only a ROLLBACK removes them). */
  private unitRowsInTransaction = false;
  /** Whether completed units of this transaction precede the current unit (then the unit defers flushing). */
  private unitShared = false;
  /** A flush into the transaction failed: DuckDB has aborted the transaction, so only a ROLLBACK helps. */
  private flushFailed = false;

  constructor(
    name: string,
    columns: Columns,
    private readonly batchRows: number,
  ) {
    checkIdentifier('table', name);
    const names = Object.keys(columns);
    if (names.length === 0) throw new Error(`table '${name}' declares no columns`);
    for (const column of names) {
      checkIdentifier('column', column);
      const type = columns[column];
      if (typeof type !== 'string' || !/^[A-Za-z0-9_ (),.\[\]]+$/.test(type)) {
        throw new Error(`table '${name}' column '${column}': type ${JSON.stringify(type)} is not a DuckDB type name such as VARCHAR, DOUBLE, BIGINT, TIMESTAMP`);
      }
    }
    this.name = name;
    this.columns = columns;
    this.columnNames = names;
  }

  get rowsAppended(): number {
    return this.appended;
  }

  /** Rows not yet flushed into the database (buffered in JS or in the Appender). */
  get pendingRows(): number {
    return this.unflushed + this.early.length;
  }

  /** The CREATE TABLE statement; idempotent so a resumed attempt reuses the table. */
  createStatement(): string {
    const columns = this.columnNames.map((column) => `"${column}" ${this.columns[column]}`).join(', ');
    return `CREATE TABLE IF NOT EXISTS "${this.name}" (${columns})`;
  }

  /** The query that lists the columns of the tables named (plain identifiers), as (table_name, column_name) rows in order. */
  static columnsQuery(names: readonly string[]): string {
    return `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name IN (${names.map((name) => `'${name}'`).join(', ')}) ORDER BY table_name, ordinal_position`;
  }

  /** Creates the Appender after the DDL ran and checks that an existing table has the declared columns. */
  async open(connection: DuckDBConnection): Promise<void> {
    const existing = await connection.runAndReadAll(StagingTable.columnsQuery([this.name]));
    await this.openWithColumns(connection, existing.getRows().map((row) => String(row[1])));
  }

  /** open() with the table's actual columns already read (the session reads them for several tables at once). */
  async openWithColumns(connection: DuckDBConnection, actual: readonly string[]): Promise<void> {
    if (actual.join(',').toLowerCase() !== this.columnNames.join(',').toLowerCase()) {
      throw new Error(
        `table '${this.name}' already exists in the staging database with columns (${actual.join(', ')}) ` +
          `but the extractor declares (${this.columnNames.join(', ')}); delete the staging file to start over`,
      );
    }
    this.appender = await connection.createAppender(this.name);
    this.types = this.columnNames.map((_, index) => this.appender!.columnType(index));
    const converters = this.types.map(chunkConverter);
    this.converters = converters.every((converter) => converter !== undefined) ? (converters as ChunkConverter[]) : undefined;
    this.rowColumns = this.types.map(rowColumn);
    const early = this.early;
    this.early = [];
    for (const row of early) this.write(row);
  }

  append(row: readonly CellValue[]): void {
    if (!Array.isArray(row) || row.length !== this.columnNames.length) {
      throw new TypeError(
        `table '${this.name}': append() expects an array of ${this.columnNames.length} values (${this.columnNames.join(', ')}), got ${Array.isArray(row) ? `${row.length} values` : typeof row}`,
      );
    }
    if (this.appender === undefined) this.early.push(row);
    else this.write(row);
    this.appended++;
    if (this.unflushed >= this.batchRows) this.flushWithinUnit();
  }

  /**
   * Starts tracking a unit. `shared`: completed units wait in the same transaction, so this unit's rows
   * stay out of it (up to UNIT_CACHE_LIMIT_ROWS) until the unit has finished.
   */
  beginUnit(shared: boolean): void {
    this.unitActive = true;
    this.unitShared = shared;
    this.unitAppendedBefore = this.appended;
    this.unitMark = this.chunkRows;
    this.unitRowsInChunk = [];
    this.cacheUnitRows = 0;
    this.unitRowsInTransaction = false;
  }

  /** The unit succeeded: its rows now count as a completed unit's; a full batch is flushed into the transaction. */
  endUnit(): void {
    this.unitActive = false;
    this.unitRowsInChunk = [];
    this.cacheUnitRows = 0;
    this.unitRowsInTransaction = false;
    if (this.unflushed >= this.batchRows) this.flush();
  }

  /** True when the failed unit's rows can be dropped without a ROLLBACK (see abortUnit). */
  get unitRemovable(): boolean {
    return !this.flushFailed && (!this.unitActive || !this.unitRowsInTransaction);
  }

  /** Rows the current unit appended so far. */
  get unitRows(): number {
    return this.unitActive ? this.appended - this.unitAppendedBefore : 0;
  }

  /** Drops the failed unit's rows from the chunk and the Appender's cache; the earlier units' rows stay. */
  abortUnit(): void {
    if (!this.unitActive) return;
    if (this.cacheUnitRows > 0) {
      // By construction the cache holds only this unit's rows.
      this.appender?.clear();
      this.cacheRows = 0;
    }
    this.chunkRows = Math.min(this.chunkRows, this.unitMark);
    this.unflushed = this.cacheRows + this.chunkRows;
    this.appended = this.unitAppendedBefore;
    this.unitActive = false;
    this.unitRowsInChunk = [];
    this.cacheUnitRows = 0;
  }

  /** A batch is full: flush it, unless the rows belong to a unit that shares its transaction and may still fail. */
  private flushWithinUnit(): void {
    if (!this.unitActive) {
      this.flush();
      return;
    }
    if (this.unitShared && this.unflushed < UNIT_CACHE_LIMIT_ROWS) {
      // Earlier units' rows (chunk below the mark, or a cache of earlier rows) go in now; this unit's wait.
      if (this.cacheRows > this.cacheUnitRows) this.flushCache();
      return;
    }
    this.unitRowsInTransaction = true;
    this.flush();
  }

  /** True when a batch is full and the owner should call flush(). */
  get batchFull(): boolean {
    return this.pendingRows >= this.batchRows;
  }

  /** Moves every buffered row into the database, inside the connection's current transaction. */
  flush(): void {
    if (this.appender === undefined) return;
    this.pushChunk();
    if (this.unflushed > 0) {
      this.flushAppender();
      this.unflushed = 0;
    }
    this.cacheRows = 0;
    this.cacheUnitRows = 0;
    this.unitMark = 0;
    this.unitRowsInChunk = [];
  }

  private flushAppender(): void {
    try {
      this.appender!.flushSync();
    } catch (error) {
      this.flushFailed = true;
      throw error;
    }
  }

  /** Flushes the Appender's cache (rows of completed units) into the transaction; the chunk stays. */
  private flushCache(): void {
    if (this.cacheRows === 0) return;
    this.flushAppender();
    this.unflushed -= this.cacheRows;
    this.cacheRows = 0;
    this.cacheUnitRows = 0;
  }

  /**
   * Forgets buffered rows after a rollback: the chunk, the Appender's cache, and the count of rows
   * appended since `appendedBefore`. The Appender is released, as a failed flush can leave it
   * unusable; reopenAppender() replaces it (rows appended meanwhile wait in JS, as before open()).
   */
  discard(appendedBefore: number): void {
    this.chunk = undefined;
    this.vectors = [];
    this.chunkRows = 0;
    this.early = [];
    this.unflushed = 0;
    this.cacheRows = 0;
    this.cacheUnitRows = 0;
    this.unitMark = 0;
    this.unitRowsInChunk = [];
    this.unitActive = false;
    this.unitRowsInTransaction = false;
    this.flushFailed = false;
    this.appended = appendedBefore;
    if (this.appender !== undefined) {
      try {
        this.appender.clear();
        this.appender.closeSync();
      } catch {
        // A failed flush leaves the Appender invalid; it is replaced by reopenAppender() either way.
      }
      this.appender = undefined;
      this.reopenPending = true;
    }
  }

  /** Creates a fresh Appender after discard() and writes the rows appended in between. */
  async reopenAppender(connection: DuckDBConnection): Promise<void> {
    if (!this.reopenPending) return;
    this.appender = await connection.createAppender(this.name);
    this.reopenPending = false;
    const early = this.early;
    this.early = [];
    for (const row of early) this.write(row);
  }

  /** Flushes and releases the Appender (it holds the connection open). */
  close(): void {
    if (this.appender === undefined) return;
    this.flush();
    this.appender.closeSync();
    this.appender = undefined;
  }

  /** Releases the Appender WITHOUT flushing: used when the run failed and buffered rows must not commit. */
  abandon(): void {
    if (this.appender === undefined) return;
    try {
      this.appender.clear();
      this.appender.closeSync();
    } catch {
      // Closing after a failed flush can throw; the connection is closed right after anyway.
    }
    this.appender = undefined;
    this.chunk = undefined;
    this.chunkRows = 0;
    this.unflushed = 0;
    this.cacheRows = 0;
    this.cacheUnitRows = 0;
  }

  private write(row: readonly CellValue[]): void {
    const appender = this.appender!;
    const converters = this.converters;
    if (converters === undefined) {
      // Row path: rows go straight into the Appender's cache, which must not mix earlier units' rows with this unit's.
      if (this.unitActive && this.cacheUnitRows === 0 && this.cacheRows > 0) this.flushCache();
      // Convert first, so a bad value cannot leave a half-written row in the Appender.
      for (let column = 0; column < row.length; column++) {
        const value = row[column] ?? null;
        try {
          this.rowValues[column] = value === null ? null : this.rowColumns[column]!.convert(value);
        } catch (error) {
          throw this.cellError(column, value, error);
        }
      }
      for (let column = 0; column < row.length; column++) {
        const converted = this.rowValues[column];
        if (converted === null) appender.appendNull();
        else this.rowColumns[column]!.put(appender, converted);
      }
      appender.endRow();
      this.unflushed++;
      this.cacheRows++;
      if (this.unitActive) this.cacheUnitRows++;
      return;
    }
    if (this.chunk === undefined) {
      this.chunk = duckdb().DuckDBDataChunk.create(this.types, CHUNK_ROWS);
      this.vectors = this.types.map((_, index) => this.chunk!.getColumnVector(index));
    }
    const index = this.chunkRows;
    for (let column = 0; column < row.length; column++) {
      const value = row[column] ?? null;
      try {
        (this.vectors[column] as { setItem(i: number, v: unknown): void }).setItem(index, value === null ? null : converters[column]!(value));
      } catch (error) {
        throw this.cellError(column, value, error);
      }
    }
    this.chunkRows++;
    this.unflushed++;
    if (this.unitActive) this.unitRowsInChunk.push(row);
    if (this.chunkRows === CHUNK_ROWS) {
      if (this.unitActive) this.chunkFullInUnit();
      else this.pushChunk();
    }
  }

  /** The chunk is full inside a unit: keep the unit's rows apart from earlier units' rows on their way to the cache. */
  private chunkFullInUnit(): void {
    if (this.unitMark > 0) {
      // The chunk starts with earlier units' rows: they go (with the cache) into the transaction, and the
      // unit's rows are written again at the start of a fresh chunk.
      const unitRows = this.unitRowsInChunk;
      this.chunkRows = this.unitMark;
      this.unflushed -= unitRows.length;
      this.pushChunk();
      this.flushCache();
      this.unitMark = 0;
      this.unitRowsInChunk = [];
      for (const row of unitRows) this.write(row);
      return;
    }
    if (this.cacheRows > this.cacheUnitRows) this.flushCache();
    this.cacheUnitRows += this.chunkRows;
    this.pushChunk();
    this.unitRowsInChunk = [];
  }

  private pushChunk(): void {
    if (this.chunk === undefined || this.chunkRows === 0) return;
    for (const vector of this.vectors) vector.flush();
    this.chunk.rowCount = this.chunkRows;
    this.appender!.appendDataChunk(this.chunk);
    this.cacheRows += this.chunkRows;
    // The chunk is reused: a new one per 2,048 rows left its native buffers to the garbage collector,
    // which runs too rarely to notice them (V8 does not see native memory), so RSS crept up.
    this.chunk.reset();
    this.chunk.rowCount = CHUNK_ROWS;
    this.vectors = this.types.map((_, index) => this.chunk!.getColumnVector(index));
    this.chunkRows = 0;
  }

  private cellError(column: number, value: CellValue, cause: unknown): Error {
    const reason = cause instanceof Error ? cause.message : String(cause);
    return new TypeError(
      `table '${this.name}' column '${this.columnNames[column]}' (${this.columns[this.columnNames[column]!]}): cannot store ${describe(value)}: ${reason}`,
    );
  }
}
