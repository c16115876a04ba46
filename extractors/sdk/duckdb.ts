// @duckdb/node-api loaded with require(). Importing the CommonJS package from ESM makes Node pre-parse
// each of its files for named exports (cjs-module-lexer): ~80 ms of CPU at every extractor start,
// which is a tenth of a small extraction. Types come from the package as usual.
import { createRequire } from 'node:module';
import type * as DuckDB from '@duckdb/node-api';

const duckdb = createRequire(import.meta.url)('@duckdb/node-api') as typeof DuckDB;

// Why: the SDK's one entry to DuckDB's runtime values (see the file header).
export const { DuckDBInstance, DuckDBDataChunk, DuckDBTimestampValue, DuckDBTypeId } = duckdb;
export type DuckDBInstance = DuckDB.DuckDBInstance;
export type DuckDBDataChunk = DuckDB.DuckDBDataChunk;
export type DuckDBTimestampValue = DuckDB.DuckDBTimestampValue;
