// Reads tabular artifacts (CSV, JSON/JSONL, Parquet with DuckDB's readers in a private in-memory
// DuckDB; NumPy .npy with our own parser) as rows of a declared set of columns, streamed chunk by
// chunk. Columns come from the job options or are inferred from the first matching file; later files
// are projected onto them by name (a missing column is NULL, an extra one is ignored).
//
// Many files are read in few queries (`readMany`): one query learns how DuckDB would read each file
// on its own (CSV: its sniffed dialect and types; JSON/Parquet: its columns and types), consecutive
// files that would be read the same way form a group, and each group is one multi-file scan with a
// filename column that maps rows back to their file. Each file is thus parsed exactly as a read of
// that file alone would parse it. A planning or group query that fails falls back to reading file by
// file from where it stopped, so a bad file is still named, and no row is written twice.
//
// Learning how DuckDB reads a CSV file (sniff_csv) costs ~5 ms a file, whatever its size: for a run's
// hundreds of small per-subject files it was most of the extraction. A small, plain CSV file (see
// csvFingerprint) is therefore planned from its fingerprint when a file with the same fingerprint was
// sniffed before: the fingerprint keeps everything the sniffer decides on, so the plan is the one
// sniffing it would give.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type { CellValue, Columns } from '../sdk/api.js';
import { duckdb } from '../sdk/duckdb.js';
import { parseNpy } from './npy.js';

export type TableFormat = 'csv' | 'json' | 'parquet' | 'npy';

/** Columns every artifact-content table starts with. */
export const ARTIFACT_ROW_COLUMNS: Columns = { run_id: 'VARCHAR', artifact_path: 'VARCHAR', row: 'BIGINT' };

// Why: the format follows the extension unless the job says otherwise.
export function formatOf(artifactPath: string): TableFormat | undefined {
  const lower = artifactPath.toLowerCase();
  if (/\.(csv|tsv|csv\.gz)$/.test(lower)) return 'csv';
  if (/\.(parquet|pq)$/.test(lower)) return 'parquet';
  if (/\.(json|jsonl|ndjson)$/.test(lower)) return 'json';
  if (lower.endsWith('.npy')) return 'npy';
  return undefined;
}

function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function quote(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The filename column of multi-file scans (a file with a column of this name is read on its own). */
const FILE_COLUMN = '__duckvisor_file';

/**
 * At most this many files per planning query and group scan: bounds the query text and the sniffer's
 * transient buffers (measured on the seed store: 16–128 cost the same CPU; RSS grows slightly with size).
 */
const FILES_PER_PLAN = 32;

/** CSV files up to this size and number of lines are fingerprinted; larger ones are always sniffed. */
const FINGERPRINT_MAX_BYTES = 256 * 1024;
const FINGERPRINT_MAX_LINES = 4096;
/** Plans remembered by fingerprint, at most (the oldest is forgotten first). */
const FINGERPRINT_PLANS = 64;
/**
 * The characters of a plain CSV file: none of them is a candidate quote, escape, other delimiter or
 * comment of the sniffer, and none is a space or a CR.
 */
const PLAIN_CSV = /^[A-Za-z0-9_.,+\-\n]*$/;
/**
 * A decimal number that DuckDB's sniffer can only read as DOUBLE (or VARCHAR): never BIGINT (it has a
 * fraction), never a date or time (one '.', no other separator), always finite, no leading zero (which
 * makes the sniffer keep a column as text: '00.25' is VARCHAR).
 */
const PLAIN_DECIMAL = /^-?(0|[1-9]\d{0,15})\.\d{1,16}$/;

/**
 * What DuckDB's CSV sniffer decides a small, plain CSV file on, or undefined when the file is not one.
 * Plain: only the characters of PLAIN_CSV ('\n' line ends); the same number of ',' fields on every line,
 * no empty line; a header and at least one data line, all within the sniffer's sample. Every such file
 * gets the same dialect, and a column's type is the first candidate type that each of the column's
 * values can be cast to: it depends only on the set of values, where all plain decimals (PLAIN_DECIMAL)
 * count as one (they cast to the same types) and any other value as itself.
 * Two files with the same fingerprint (which includes the header's exact bytes) are sniffed alike.
 */
export function csvFingerprint(text: string): string | undefined {
  if (!PLAIN_CSV.test(text)) return undefined;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length < 2 || lines.length > FINGERPRINT_MAX_LINES) return undefined;
  const header = lines[0]!;
  const width = header.split(',').length;
  const values: Set<string>[] = Array.from({ length: width }, () => new Set<string>());
  for (let line = 1; line < lines.length; line++) {
    if (lines[line] === '') return undefined;
    const cells = lines[line]!.split(',');
    if (cells.length !== width) return undefined;
    for (let column = 0; column < width; column++) {
      const cell = cells[column]!;
      values[column]!.add(PLAIN_DECIMAL.test(cell) ? 'decimal' : `=${cell}`);
    }
  }
  return createHash('sha256')
    .update(JSON.stringify([header, values.map((set) => [...set].sort())]))
    .digest('hex');
}

/** The fingerprint of a CSV file small enough to read whole; undefined for any other (it is sniffed). */
async function csvFileFingerprint(file: string): Promise<string | undefined> {
  try {
    if ((await stat(file)).size > FINGERPRINT_MAX_BYTES) return undefined;
    return csvFingerprint(await readFile(file, 'utf8'));
  } catch {
    return undefined; // unreadable: sniff_csv names the problem
  }
}

// Why: the extractor names the artifact (and its run) when a file of a batched read cannot be read.
export class ArtifactFileError extends Error {
  override name = 'ArtifactFileError';
  constructor(
    /** Position of the file in the list given to readMany. */
    readonly index: number,
    readonly reason: unknown,
  ) {
    super(reason instanceof Error ? reason.message : String(reason));
  }
}

/** Rows of one file (by its position in the list given to readMany), in file order. */
export interface FileRows {
  index: number;
  rows: CellValue[][];
}

/** How DuckDB reads one file on its own: files with equal keys are read by one scan. */
interface FilePlan {
  key: string;
  present: Set<string>;
  /** Options of the multi-file scan after the file list. */
  scanOptions: string;
}

function scan(format: Exclude<TableFormat, 'npy'>, file: string): string {
  switch (format) {
    case 'csv':
      return `read_csv(${sqlString(file)}, header = true)`;
    case 'parquet':
      return `read_parquet(${sqlString(file)})`;
    case 'json':
      return `read_json_auto(${sqlString(file)})`;
  }
}

/** DuckDB's type for a column, narrowed to what the staging tables hold well. */
function simpleType(duckType: string): string {
  const t = duckType.toUpperCase();
  if (/^(TINYINT|SMALLINT|INTEGER|BIGINT|UTINYINT|USMALLINT|UINTEGER|HUGEINT)$/.test(t)) return 'BIGINT';
  if (/^(FLOAT|DOUBLE|REAL)$/.test(t) || t.startsWith('DECIMAL')) return 'DOUBLE';
  if (t === 'BOOLEAN') return 'BOOLEAN';
  if (t === 'TIMESTAMP' || t === 'DATE') return t;
  return 'VARCHAR';
}

function cell(value: unknown): CellValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'string' || typeof value === 'boolean') return value;
  return String(value);
}

/**
 * Every file is read once, so DuckDB's cache of file contents (on by default, bounded only by the
 * memory_limit) would only keep files already read, growing with the number of runs. bench/extract
 * artifacts, SQLite store: peak RSS 1× 178 → 169 MiB, 10× 196 → 187 MiB.
 */
const READER_CACHE_SETTINGS: Record<string, string> = { enable_external_file_cache: 'false' };

// Why: one private DuckDB per extractor process reads the files, apart from the SDK's staging connection.
export class ArtifactTableReader {
  /** CSV plans by fingerprint (csvFingerprint), in the order they were learnt. */
  private readonly plansByFingerprint = new Map<string, FilePlan>();
  private sniffed = 0;

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly connection: DuckDBConnection,
  ) {}

  /** CSV files that batched reads have sniffed so far (the others were planned from a fingerprint). */
  get filesSniffed(): number {
    return this.sniffed;
  }

  static async open(): Promise<ArtifactTableReader> {
    const instance = await duckdb().DuckDBInstance.create(':memory:', { threads: '1', memory_limit: '256MB', ...READER_CACHE_SETTINGS });
    return new ArtifactTableReader(instance, await instance.connect());
  }

  /** The columns of one file (used to declare a table from its first matching artifact). */
  async describe(file: string, format: TableFormat): Promise<Columns> {
    if (format === 'npy') {
      const array = parseNpy(await readFile(file), file);
      const columns: Columns = {};
      const sample = array.rows > 0 ? array.get(0, 0) : 0;
      const type = typeof sample === 'bigint' ? 'BIGINT' : typeof sample === 'boolean' ? 'BOOLEAN' : 'DOUBLE';
      if (array.shape.length < 2) columns['value'] = type;
      else for (let c = 0; c < array.columns; c++) columns[`c${c}`] = type;
      return columns;
    }
    const reader = await this.connection.runAndReadAll(`DESCRIBE SELECT * FROM ${scan(format, file)}`);
    const columns: Columns = {};
    for (const row of reader.getRowObjects()) columns[String(row['column_name'])] = simpleType(String(row['column_type']));
    return columns;
  }

  /** The file's rows projected onto `columns`, in batches (values in the order of `columns`). */
  async *rows(file: string, format: TableFormat, columns: Columns): AsyncGenerator<CellValue[][]> {
    const names = Object.keys(columns);
    if (format === 'npy') {
      const array = parseNpy(await readFile(file), file);
      const fileColumns = array.shape.length < 2 ? ['value'] : Array.from({ length: array.columns }, (_, c) => `c${c}`);
      const index = names.map((name) => fileColumns.indexOf(name));
      let batch: CellValue[][] = [];
      for (let r = 0; r < array.rows; r++) {
        batch.push(index.map((c) => (c < 0 ? null : (array.get(r, c) as CellValue))));
        if (batch.length >= 2048) {
          yield batch;
          batch = [];
        }
      }
      if (batch.length > 0) yield batch;
      return;
    }
    const present = new Set(Object.keys(await this.describe(file, format)));
    const projection = names
      .map((name) => (present.has(name) ? `TRY_CAST(${quote(name)} AS ${columns[name]}) AS ${quote(name)}` : `NULL::${columns[name]} AS ${quote(name)}`))
      .join(', ');
    const types = names.map((name) => columns[name]!);
    for await (const rows of this.streamToEnd(`SELECT ${projection}${projection === '' ? '' : ', '}1 FROM ${scan(format, file)}`, types)) {
      yield rows.map((row) => row.slice(0, names.length).map(cell));
    }
  }

  /**
   * The rows of `select` (whose last column is never NULL), chunk by chunk. The node bindings end a
   * stream that fails midway as if it were complete, so a sentinel row (last column NULL) is appended
   * with UNION ALL: the read is whole only when the sentinel arrives last. Otherwise the query is run
   * again, materialized, which raises the error DuckDB hit (a value that fails its sniffed type past
   * the sniffer's sample, a corrupt page, …); with `explain` false (the caller falls back to reading
   * file by file anyway) it just throws.
   */
  private async *streamToEnd(select: string, types: readonly string[], explain = true): AsyncGenerator<unknown[][]> {
    const sentinel = `SELECT ${[...types.map((type) => `NULL::${type}`), 'NULL'].join(', ')}`;
    const result = await this.connection.stream(`${select} UNION ALL ${sentinel}`);
    for (;;) {
      const chunk = await result.fetchChunk();
      if (chunk === null || chunk.rowCount === 0) break;
      const rows = chunk.getRows();
      const end = rows.findIndex((row) => row[types.length] === null);
      if (end < 0) {
        yield rows;
        continue;
      }
      if (end !== rows.length - 1) throw new Error('the read returned rows after its end marker');
      if (end > 0) yield rows.slice(0, end);
      return;
    }
    if (explain) await this.connection.run(select);
    throw new Error('DuckDB ended the read early without reporting an error');
  }

  /**
   * The rows of many files of one format, projected onto `columns` like `rows` does for each file,
   * in file order (each file's rows contiguous, in its own order). A file that cannot be read throws
   * ArtifactFileError with its position, after the rows of every file before it.
   */
  async *readMany(files: readonly string[], format: TableFormat, columns: Columns): AsyncGenerator<FileRows> {
    for (let start = 0; start < files.length; start += FILES_PER_PLAN) {
      const end = Math.min(files.length, start + FILES_PER_PLAN);
      const plans = format !== 'npy' && end - start > 1 ? await this.plan(files.slice(start, end), format).catch(() => undefined) : undefined;
      if (plans === undefined) {
        for (let index = start; index < end; index++) yield* this.readOne(files, index, format, columns, 0);
        continue;
      }
      let first = start;
      while (first < end) {
        let last = first + 1;
        while (last < end && plans[last - start]!.key === plans[first - start]!.key) last++;
        if (last - first === 1) yield* this.readOne(files, first, format, columns, 0);
        else yield* this.readGroup(files, first, last, format as Exclude<TableFormat, 'npy'>, plans[first - start]!, columns);
        first = last;
      }
    }
  }

  /** One file through `rows`, without its first `skip` rows (already delivered by a group scan). */
  private async *readOne(files: readonly string[], index: number, format: TableFormat, columns: Columns, skip: number): AsyncGenerator<FileRows> {
    let toSkip = skip;
    try {
      for await (const batch of this.rows(files[index]!, format, columns)) {
        const rows = toSkip >= batch.length ? [] : toSkip > 0 ? batch.slice(toSkip) : batch;
        toSkip = Math.max(0, toSkip - batch.length);
        if (rows.length > 0) yield { index, rows };
      }
    } catch (error) {
      throw new ArtifactFileError(index, error);
    }
  }

  /** How DuckDB reads each file on its own, in one query. Throws when any file cannot be planned. */
  private async plan(files: readonly string[], format: Exclude<TableFormat, 'npy'>): Promise<FilePlan[]> {
    const plans: FilePlan[] = [];
    if (format === 'csv') {
      const fingerprints = await Promise.all(files.map((file) => csvFileFingerprint(file)));
      // Sniffed: each file whose fingerprint is not known, but only the first of a fingerprint new in this batch.
      const firstOf = new Map<string, number>();
      const toSniff: number[] = [];
      for (let i = 0; i < files.length; i++) {
        const fingerprint = fingerprints[i];
        const known = fingerprint === undefined ? undefined : this.plansByFingerprint.get(fingerprint);
        if (known !== undefined) plans[i] = known;
        else if (fingerprint === undefined || !firstOf.has(fingerprint)) {
          if (fingerprint !== undefined) firstOf.set(fingerprint, i);
          toSniff.push(i);
        }
      }
      if (toSniff.length > 0) {
        const sql = toSniff.map((i) => `SELECT ${i} AS i, "Columns" AS columns, Prompt AS prompt FROM sniff_csv(${sqlString(files[i]!)}, header = true)`).join(' UNION ALL ');
        this.sniffed += toSniff.length;
        const rows = (await this.connection.runAndReadAll(sql)).getRowObjectsJS();
        if (rows.length !== toSniff.length) throw new Error(`sniffed ${rows.length} of ${toSniff.length} files`);
        for (const row of rows) {
          const i = Number(row['i']);
          const file = files[i]!;
          const prompt = String(row['prompt']);
          const prefix = `FROM read_csv(${sqlString(file)}, `;
          if (!prompt.startsWith(prefix) || !prompt.endsWith(');')) throw new Error(`unexpected sniff_csv prompt for ${file}: ${prompt}`);
          const scanOptions = prompt.slice(prefix.length, -2);
          const names = (row['columns'] as { name: string }[]).map((c) => String(c.name));
          const plan = { key: scanOptions, present: new Set(names), scanOptions };
          plans[i] = plan;
          const fingerprint = fingerprints[i];
          if (fingerprint !== undefined) this.rememberPlan(fingerprint, plan);
        }
      }
      for (let i = 0; i < files.length; i++) {
        if (plans[i] !== undefined) continue;
        // A later file of a fingerprint first seen (and sniffed) in this batch.
        const first = firstOf.get(fingerprints[i]!);
        const plan = first === undefined ? undefined : plans[first];
        if (plan === undefined) throw new Error(`no plan for ${files[i]}`);
        plans[i] = plan;
      }
    } else {
      const sql = files.map((file, i) => `SELECT ${i} AS i, column_name, column_type FROM (DESCRIBE SELECT * FROM ${scan(format, file)})`).join(' UNION ALL ');
      const described = new Map<number, [string, string][]>();
      for (const row of (await this.connection.runAndReadAll(sql)).getRowObjectsJS()) {
        const i = Number(row['i']);
        described.set(i, [...(described.get(i) ?? []), [String(row['column_name']), String(row['column_type'])]]);
      }
      for (let i = 0; i < files.length; i++) {
        const columns = described.get(i);
        if (columns === undefined) throw new Error(`no columns described for ${files[i]}`);
        plans[i] = { key: JSON.stringify(columns), present: new Set(columns.map(([name]) => name)), scanOptions: 'union_by_name = true' };
      }
    }
    return plans;
  }

  /** Files [first, last) that DuckDB reads alike, in one scan; on failure, file by file from where it stopped. */
  private async *readGroup(files: readonly string[], first: number, last: number, format: Exclude<TableFormat, 'npy'>, plan: FilePlan, columns: Columns): AsyncGenerator<FileRows> {
    const names = Object.keys(columns);
    if (plan.present.has(FILE_COLUMN)) {
      for (let index = first; index < last; index++) yield* this.readOne(files, index, format, columns, 0);
      return;
    }
    const projection = names
      .map((name) => (plan.present.has(name) ? `TRY_CAST(${quote(name)} AS ${columns[name]}) AS ${quote(name)}` : `NULL::${columns[name]} AS ${quote(name)}`))
      .concat(quote(FILE_COLUMN))
      .join(', ');
    const list = `[${files.slice(first, last).map(sqlString).join(', ')}]`;
    const reader = format === 'csv' ? 'read_csv' : format === 'parquet' ? 'read_parquet' : 'read_json_auto';
    const sql = `SELECT ${projection} FROM ${reader}(${list}, ${plan.scanOptions}, filename = ${sqlString(FILE_COLUMN)})`;
    const position = new Map<string, number>();
    for (let index = first; index < last; index++) if (!position.has(files[index]!)) position.set(files[index]!, index);
    if (position.size !== last - first) {
      // The same file twice in one list: read them one by one (the filename cannot tell them apart).
      for (let index = first; index < last; index++) yield* this.readOne(files, index, format, columns, 0);
      return;
    }
    let current = first;
    let delivered = 0;
    try {
      for await (const rows of this.streamToEnd(sql, names.map((name) => columns[name]!), false)) {
        // Split the chunk by file before delivering any of it, so `delivered` counts what the caller got.
        const parts: FileRows[] = [];
        let at = current;
        for (const row of rows) {
          const index = position.get(String(row[names.length]));
          if (index === undefined || index < at) throw new Error(`rows of ${String(row[names.length])} out of file order`);
          if (index !== at || parts.length === 0) {
            parts.push({ index, rows: [] });
            at = index;
          }
          parts[parts.length - 1]!.rows.push(row.slice(0, names.length).map(cell));
        }
        for (const part of parts) {
          if (part.index !== current) {
            current = part.index;
            delivered = 0;
          }
          delivered += part.rows.length;
          yield part;
        }
      }
    } catch (error) {
      if (error instanceof ArtifactFileError) throw error;
      for (let index = current; index < last; index++) yield* this.readOne(files, index, format, columns, index === current ? delivered : 0);
    }
  }

  private rememberPlan(fingerprint: string, plan: FilePlan): void {
    this.plansByFingerprint.set(fingerprint, plan);
    if (this.plansByFingerprint.size > FINGERPRINT_PLANS) this.plansByFingerprint.delete(this.plansByFingerprint.keys().next().value!);
  }

  close(): void {
    this.connection.closeSync();
    this.instance.closeSync();
  }
}
