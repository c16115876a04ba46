// @duckdb/node-api loaded with require(), and only when first used (StagingSession.open, normally).
// Importing the CommonJS package from ESM makes Node pre-parse each of its files for named exports
// (cjs-module-lexer): ~55-80 ms of CPU at every process start. Loading it takes ~60 ms of the main
// thread even so; deferring it to StagingSession.open lets an extractor's prepare step (api.ts) start
// its first slow reads (a tracking server's listing) before that. Every child (extractors, the
// publisher, the derived extractors' warehouse snapshots, the artifact-table reader) loads it through
// here; types come from the package as usual (`import type`).
import { createRequire } from 'node:module';
import type * as DuckDB from '@duckdb/node-api';

export type DuckDBInstance = DuckDB.DuckDBInstance;
export type DuckDBDataChunk = DuckDB.DuckDBDataChunk;
export type DuckDBTimestampValue = DuckDB.DuckDBTimestampValue;

let loaded: typeof DuckDB | undefined;

// Why: the SDK's one entry to DuckDB's runtime values (see the file header).
/** DuckDB's runtime values, loaded on the first call. */
export function duckdb(): typeof DuckDB {
  loaded ??= createRequire(import.meta.url)('@duckdb/node-api') as typeof DuckDB;
  return loaded;
}
