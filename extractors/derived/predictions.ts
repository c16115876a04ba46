// Reading one prediction artifact (y_true, y_prob) from CSV, Parquet or NPY. CSV and Parquet are read
// by DuckDB (the snapshot's connection); NPY is parsed here. Supported NPY layouts:
//   - a structured array with fields named like the configured columns (default y_true, y_prob),
//     e.g. np.save(f, np.rec.fromarrays([y_true, y_prob], names='y_true,y_prob'));
//   - a 2-D array of shape (n, 2): column 0 is y_true, column 1 is y_prob (C or Fortran order).
// Numeric dtypes: float16 is not supported; f4, f8, i1–i8, u1–u8 and b1 are, in either byte order.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { sqlIdentifier, sqlString } from './run-attributes.js';

export interface Predictions {
  yTrue: Float64Array;
  yProb: Float64Array;
}

export interface PredictionColumns {
  yTrue: string;
  yProb: string;
}

/** File formats the curves extractor reads, by extension. */
export const PREDICTION_EXTENSIONS = ['.csv', '.parquet', '.npy'] as const;

type NumberReader = (view: DataView, offset: number) => number;

function dtypeReader(descr: string, file: string): { size: number; read: NumberReader } {
  const match = /^([<>|=]?)([fiub])(\d+)$/.exec(descr);
  if (!match) throw new Error(`${file}: NPY dtype '${descr}' is not supported; use float64, float32 or an integer type`);
  const little = match[1] !== '>';
  const kind = match[2]!;
  const size = Number(match[3]);
  const readers: Record<string, NumberReader | undefined> = {
    f4: (v, o) => v.getFloat32(o, little),
    f8: (v, o) => v.getFloat64(o, little),
    i1: (v, o) => v.getInt8(o),
    i2: (v, o) => v.getInt16(o, little),
    i4: (v, o) => v.getInt32(o, little),
    i8: (v, o) => Number(v.getBigInt64(o, little)),
    u1: (v, o) => v.getUint8(o),
    u2: (v, o) => v.getUint16(o, little),
    u4: (v, o) => v.getUint32(o, little),
    u8: (v, o) => Number(v.getBigUint64(o, little)),
    b1: (v, o) => (v.getUint8(o) === 0 ? 0 : 1),
  };
  const read = readers[`${kind}${size}`];
  if (!read) throw new Error(`${file}: NPY dtype '${descr}' is not supported; use float64, float32 or an integer type`);
  return { size, read };
}

// Why: MLflow runs often log predictions with np.save; DuckDB cannot read .npy, so we parse it.
export function parseNpyPredictions(buffer: Uint8Array, file: string, columns: PredictionColumns): Predictions {
  const magic = String.fromCharCode(...buffer.subarray(1, 6));
  if (buffer[0] !== 0x93 || magic !== 'NUMPY') throw new Error(`${file}: not an NPY file (bad magic bytes)`);
  const major = buffer[6]!;
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder(major >= 3 ? 'utf-8' : 'latin1').decode(buffer.subarray(headerStart, headerStart + headerLength));
  const dataStart = headerStart + headerLength;
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeMatch = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!shapeMatch) throw new Error(`${file}: NPY header has no shape: ${header.trim()}`);
  const shape = shapeMatch[1]!
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map(Number);
  const descrList = /'descr':\s*\[(.*)\]\s*,\s*'fortran_order'/s.exec(header);
  if (descrList) {
    if (shape.length !== 1) throw new Error(`${file}: a structured NPY array must be 1-D, got shape (${shape.join(', ')})`);
    const fields: { name: string; offset: number; size: number; read: NumberReader }[] = [];
    let offset = 0;
    for (const field of descrList[1]!.matchAll(/\(\s*'([^']+)'\s*,\s*'([^']+)'\s*(?:,\s*\([^)]*\)\s*)?\)/g)) {
      const reader = field[2]!.startsWith('|V') ? undefined : dtypeReader(field[2]!, file);
      const size = reader?.size ?? Number(field[2]!.slice(2));
      if (reader) fields.push({ name: field[1]!, offset, size, read: reader.read });
      offset += size;
    }
    const recordSize = offset;
    const find = (name: string) => {
      const found = fields.find((field) => field.name === name);
      if (!found) throw new Error(`${file}: NPY structured array has no field '${name}' (fields: ${fields.map((f) => f.name).join(', ')})`);
      return found;
    };
    const trueField = find(columns.yTrue);
    const probField = find(columns.yProb);
    const n = shape[0]!;
    if (dataStart + n * recordSize > buffer.byteLength) throw new Error(`${file}: NPY file is truncated (${n} records of ${recordSize} bytes expected)`);
    const yTrue = new Float64Array(n);
    const yProb = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const base = dataStart + i * recordSize;
      yTrue[i] = trueField.read(view, base + trueField.offset);
      yProb[i] = probField.read(view, base + probField.offset);
    }
    return { yTrue, yProb };
  }
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  if (descr === undefined) throw new Error(`${file}: NPY header has no descr: ${header.trim()}`);
  if (shape.length !== 2 || shape[1] !== 2) {
    throw new Error(
      `${file}: NPY array of shape (${shape.join(', ')}) is not a prediction table; save a structured array with fields ` +
        `${columns.yTrue} and ${columns.yProb}, or an (n, 2) array of [y_true, y_prob]`,
    );
  }
  const { size, read } = dtypeReader(descr, file);
  const n = shape[0]!;
  if (dataStart + n * 2 * size > buffer.byteLength) throw new Error(`${file}: NPY file is truncated (${n}×2 values of ${size} bytes expected)`);
  const yTrue = new Float64Array(n);
  const yProb = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const trueIndex = fortran ? i : 2 * i;
    const probIndex = fortran ? n + i : 2 * i + 1;
    yTrue[i] = read(view, dataStart + trueIndex * size);
    yProb[i] = read(view, dataStart + probIndex * size);
  }
  return { yTrue, yProb };
}

/** Converts a DuckDB value column (numbers, bigints, booleans) into doubles; NULL is an error. */
function toDoubles(values: readonly unknown[], file: string, column: string): Float64Array {
  const out = new Float64Array(values.length);
  values.forEach((value, index) => {
    if (value === null || value === undefined) throw new Error(`${file}: ${column} is empty on data row ${index + 1}`);
    out[index] = typeof value === 'boolean' ? (value ? 1 : 0) : Number(value);
  });
  return out;
}

// Why: the single entry point the curves extractor calls per artifact file.
export async function readPredictionFile(
  connection: DuckDBConnection,
  file: string,
  columns: PredictionColumns,
  maxBytes: number,
): Promise<Predictions> {
  const size = statSync(file).size;
  if (size > maxBytes) throw new Error(`${file}: ${size} bytes exceeds max_file_bytes (${maxBytes}); raise it if this file is meant to be read`);
  const extension = path.extname(file).toLowerCase();
  if (extension === '.npy') return parseNpyPredictions(readFileSync(file), file, columns);
  const source =
    extension === '.csv'
      ? `read_csv(${sqlString(file)}, header = true)`
      : extension === '.parquet'
        ? `read_parquet(${sqlString(file)})`
        : undefined;
  if (source === undefined) throw new Error(`${file}: unsupported prediction format '${extension}' (use ${PREDICTION_EXTENSIONS.join(', ')})`);
  let reader;
  try {
    reader = await connection.runAndReadAll(
      `SELECT CAST(${sqlIdentifier(columns.yTrue)} AS DOUBLE) AS y_true, CAST(${sqlIdentifier(columns.yProb)} AS DOUBLE) AS y_prob FROM ${source}`,
    );
  } catch (error) {
    throw new Error(`${file}: cannot read columns ${columns.yTrue}, ${columns.yProb}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
  }
  const [yTrue, yProb] = reader.getColumns();
  return { yTrue: toDoubles(yTrue ?? [], file, columns.yTrue), yProb: toDoubles(yProb ?? [], file, columns.yProb) };
}
