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
import { readFile } from 'node:fs/promises';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import type { CellValue, Columns } from '../sdk/api.js';
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
  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly connection: DuckDBConnection,
  ) {}

  static async open(): Promise<ArtifactTableReader> {
    const instance = await DuckDBInstance.create(':memory:', { threads: '1', memory_limit: '256MB', ...READER_CACHE_SETTINGS });
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
      const sql = files.map((file, i) => `SELECT ${i} AS i, "Columns" AS columns, Prompt AS prompt FROM sniff_csv(${sqlString(file)}, header = true)`).join(' UNION ALL ');
      const rows = (await this.connection.runAndReadAll(sql)).getRowObjectsJS();
      if (rows.length !== files.length) throw new Error(`sniffed ${rows.length} of ${files.length} files`);
      for (const row of rows) {
        const i = Number(row['i']);
        const file = files[i]!;
        const prompt = String(row['prompt']);
        const prefix = `FROM read_csv(${sqlString(file)}, `;
        if (!prompt.startsWith(prefix) || !prompt.endsWith(');')) throw new Error(`unexpected sniff_csv prompt for ${file}: ${prompt}`);
        const scanOptions = prompt.slice(prefix.length, -2);
        const names = (row['columns'] as { name: string }[]).map((c) => String(c.name));
        plans[i] = { key: scanOptions, present: new Set(names), scanOptions };
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

  close(): void {
    this.connection.closeSync();
    this.instance.closeSync();
  }
}
