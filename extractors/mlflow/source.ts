// Picks the reader for a source by MLflow's own conventions: a path or file: URI → file store;
// sqlite:///path/mlflow.db (or a plain path to a SQLite file) → SQL store; http(s):// → tracking server; unset → MLFLOW_TRACKING_URI.
// Relative paths resolve against the working directory (for a duckvisor job: the config's folder).
// Each reader's module is loaded when its kind of source is opened: the SQL reader brings
// better-sqlite3 and the REST reader http/https, which an extraction from another kind of source
// would load for nothing at every start.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MlflowReader } from './types.js';

export interface SourceOptions {
  /** Where SQL-store artifacts live when their recorded absolute paths do not exist. */
  artifactRoot?: string | undefined;
  onWarning?: (message: string) => void;
  env?: NodeJS.ProcessEnv;
}

/** The path inside a sqlite: URI, following SQLAlchemy: sqlite:///rel.db is relative, sqlite:////abs.db absolute. */
export function sqlitePath(uri: string): string {
  const rest = uri.replace(/^sqlite:\/\//, '');
  if (!rest.startsWith('/')) throw new Error(`source ${uri}: expected sqlite:///path/to/mlflow.db`);
  const withoutQuery = rest.slice(1).split('?')[0]!;
  return path.resolve(decodeURIComponent(withoutQuery));
}

/** A tracking-server reader opened before the extractor was loaded (early-start.ts), for the openSource call of its URI. */
let startedReader: { uri: string; reader: MlflowReader } | undefined;

/** Hands `reader` (already at work on `uri`) to the next openSource of the same URI in this process. */
export function offerStartedReader(uri: string, reader: MlflowReader): void {
  startedReader = { uri, reader };
}

// Why: the one place that maps an `options.source` string to a reader, with errors that list the forms.
export async function openSource(source: string | undefined, options: SourceOptions = {}): Promise<MlflowReader> {
  const env = options.env ?? process.env;
  const uri = source !== undefined && source.trim() !== '' ? source.trim() : env['MLFLOW_TRACKING_URI'];
  if (uri === undefined || uri.trim() === '') {
    throw new Error('no MLflow source: set options.source (a path to mlruns/, sqlite:///path/mlflow.db or http(s)://server) or MLFLOW_TRACKING_URI');
  }
  const started = startedReader;
  startedReader = undefined;
  if (started !== undefined) {
    if (started.uri === uri && options.env === undefined) return started.reader;
    await started.reader.close();
  }
  if (/^https?:\/\//i.test(uri)) {
    const { RestReader, restOptionsFromEnv } = await import('./rest-store.js');
    return new RestReader(uri, restOptionsFromEnv(env));
  }
  if (/^sqlite:/i.test(uri)) return openSqlStore(sqlitePath(uri), options);
  if (/^file:/i.test(uri)) return openFileStore(fileURLToPath(uri.startsWith('file://') ? uri : `file://${uri.slice(5)}`), options);
  if (/^[A-Za-z][A-Za-z0-9+.-]+:/.test(uri)) {
    throw new Error(`unsupported MLflow source ${uri}: use a path or file: URI (file store), sqlite:///… (SQL store) or http(s):// (tracking server); other databases can be read through their tracking server`);
  }
  if (isSqliteFile(uri)) return openSqlStore(uri, options);
  return openFileStore(uri, options);
}

async function openFileStore(root: string, options: SourceOptions): Promise<MlflowReader> {
  const { FileStoreReader } = await import('./file-store.js');
  return FileStoreReader.open(root, { onWarning: options.onWarning });
}

async function openSqlStore(file: string, options: SourceOptions): Promise<MlflowReader> {
  const { SqlStoreReader } = await import('./sql-store.js');
  return SqlStoreReader.open(file, { artifactRoot: options.artifactRoot });
}

/** A plain path naming a SQLite file (header "SQLite format 3") is read as a SQL store. */
function isSqliteFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    const fd = openSync(file, 'r');
    try {
      const header = Buffer.alloc(16);
      readSync(fd, header, 0, 16, 0);
      return header.toString('latin1').startsWith('SQLite format 3');
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}
