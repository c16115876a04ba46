// Reads tabular artifacts (CSV, JSON/JSONL, Parquet with DuckDB's readers in a private in-memory
// DuckDB; NumPy .npy with our own parser) as rows of a declared set of columns, streamed chunk by
// chunk. Columns come from the job options or are inferred from the first matching file; later files
// are projected onto them by name (a missing column is NULL, an extra one is ignored).
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

// Why: one private DuckDB per extractor process reads the files, apart from the SDK's staging connection.
export class ArtifactTableReader {
  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly connection: DuckDBConnection,
  ) {}

  static async open(): Promise<ArtifactTableReader> {
    const instance = await DuckDBInstance.create(':memory:', { threads: '1', memory_limit: '256MB' });
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
    const result = await this.connection.stream(`SELECT ${projection} FROM ${scan(format, file)}`);
    for (;;) {
      const chunk = await result.fetchChunk();
      if (chunk === null || chunk.rowCount === 0) return;
      yield chunk.getRows().map((row) => row.map(cell));
    }
  }

  close(): void {
    this.connection.closeSync();
    this.instance.closeSync();
  }
}
