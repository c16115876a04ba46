// Built-in extractor `mlflow-artifacts`: the artifact listing of every selected run and, for the
// configured glob patterns, the contents of tabular artifacts (CSV, JSON/JSONL, Parquet, NumPy .npy)
// as long tables — one row per file row, tagged with run_id, artifact_path and the row number. One
// unit per run. A run's matching files of one table are read together (ArtifactTableReader.readMany:
// few DuckDB queries for hundreds of per-subject files, each file still parsed as if read alone);
// files a tracking server serves are downloaded to a temp folder first, a bounded number at a time.
//
// Options (besides the common ones):
//   tables: - glob: 'signals/csv/*.csv'      # run-relative path pattern (*, ?, **, {a,b})
//             table: signals                   # output table
//             format: csv                      # optional; csv | json | parquet | npy, default by extension
//             columns: {t: BIGINT, reconstructed: DOUBLE}   # optional; default: the first matching file's
// Tables: artifacts(run_id, path, size)
//         <table>(run_id, artifact_path, row, <columns…>)   per tables[] entry
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { ARTIFACT_ROW_COLUMNS, ArtifactFileError, ArtifactTableReader, formatOf, type TableFormat } from '../mlflow/artifact-tables.js';
import { globToRegExp } from '../mlflow/glob.js';
import { forEachRun, mlflowSourceOptions, selectRuns } from '../mlflow/selection.js';
import { MlflowDataError, type MlflowReader, type RunInfo } from '../mlflow/types.js';
import type { Columns, TableWriter } from '../sdk/api.js';
import { defineExtractor } from '../sdk/index.js';

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a plain identifier (letters, digits, _)');

export const artifactTableSpec = z.strictObject({
  glob: z.string().min(1),
  table: identifier,
  format: z.enum(['csv', 'json', 'parquet', 'npy']).optional(),
  columns: z.record(identifier, z.string().min(1)).optional(),
});

export const mlflowArtifactsOptions = z.strictObject({
  ...mlflowSourceOptions,
  tables: z.array(artifactTableSpec).default([]),
});
export type MlflowArtifactsOptions = z.infer<typeof mlflowArtifactsOptions>;

interface TableTarget {
  spec: z.infer<typeof artifactTableSpec>;
  pattern: RegExp;
  columns?: Columns;
  writer?: TableWriter;
}

/** A local path for the artifact: the store's own file, or a download into `scratch`. */
async function withLocalFile<T>(reader: MlflowReader, run: RunInfo, artifactPath: string, scratch: string, use: (file: string) => Promise<T>): Promise<T> {
  const local = await reader.localArtifactPath(run, artifactPath);
  if (local !== undefined) {
    try {
      await stat(local);
      return await use(local);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  const file = path.join(scratch, `${run.runId}-${path.basename(artifactPath)}`);
  try {
    await pipeline(await reader.openArtifact(run, artifactPath), createWriteStream(file));
    return await use(file);
  } finally {
    await rm(file, { force: true });
  }
}

/** Files downloaded (or resolved) ahead of one batched read: bounds the scratch space a run uses. */
const FILES_PER_READ = 256;

/** One matching artifact of a run, resolved to a local file (a download is removed after the read). */
interface LocalArtifact {
  artifactPath: string;
  file: string;
  downloaded: boolean;
}

/** A local path for each artifact, in order; stops at the first that cannot be had and returns its error. */
async function resolveLocal(reader: MlflowReader, run: RunInfo, artifactPaths: readonly string[], format: TableFormat, scratch: string): Promise<{ resolved: LocalArtifact[]; failure?: MlflowDataError }> {
  const resolved: LocalArtifact[] = [];
  for (const artifactPath of artifactPaths) {
    try {
      const local = await reader.localArtifactPath(run, artifactPath);
      if (local !== undefined) {
        try {
          await stat(local);
          resolved.push({ artifactPath, file: local, downloaded: false });
          continue;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
      const file = path.join(scratch, `${resolved.length}-${path.basename(artifactPath)}`);
      resolved.push({ artifactPath, file, downloaded: true });
      await pipeline(await reader.openArtifact(run, artifactPath), createWriteStream(file));
    } catch (error) {
      if (resolved.at(-1)?.artifactPath === artifactPath) resolved.pop();
      return { resolved, failure: asDataError(run, artifactPath, format, error) };
    }
  }
  return { resolved };
}

function asDataError(run: RunInfo, artifactPath: string, format: string, error: unknown): MlflowDataError {
  if (error instanceof MlflowDataError) return error;
  return new MlflowDataError(run.runId, artifactPath, `cannot read as ${format}: ${error instanceof Error ? error.message : String(error)}`);
}

function formatFor(target: TableTarget, artifactPath: string): TableFormat {
  const format = target.spec.format ?? formatOf(artifactPath);
  if (format === undefined) throw new Error(`tables[${target.spec.table}]: cannot tell the format of ${artifactPath}; set format: csv | json | parquet | npy`);
  return format;
}

export default defineExtractor<MlflowArtifactsOptions>(
  'mlflow-artifacts',
  async (ctx) => {
    const artifacts = ctx.table('artifacts', { run_id: 'VARCHAR', path: 'VARCHAR', size: 'BIGINT' });
    const targets: TableTarget[] = ctx.options.tables.map((spec) => ({ spec, pattern: globToRegExp(spec.glob), ...(spec.columns ? { columns: spec.columns } : {}) }));
    const names = new Set(['artifacts']);
    for (const target of targets) {
      if (names.has(target.spec.table)) throw new Error(`options.tables: table '${target.spec.table}' is used twice (or clashes with 'artifacts')`);
      names.add(target.spec.table);
    }
    const { reader, runs } = await selectRuns(ctx);
    const files = await ArtifactTableReader.open();
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'duckvisor-artifacts-'));
    try {
      // Tables without configured columns take them from their first matching file.
      for (const target of targets.filter((t) => t.columns === undefined)) {
        search: for (const listing of runs) {
          if (!listing.ok) continue;
          try {
            for await (const artifact of reader.artifacts(listing.run)) {
              if (!target.pattern.test(artifact.path)) continue;
              target.columns = await withLocalFile(reader, listing.run, artifact.path, scratch, (file) => files.describe(file, formatFor(target, artifact.path)));
              ctx.log.info(`table ${target.spec.table}: columns from ${listing.run.runId}/${artifact.path}: ${JSON.stringify(target.columns)}`);
              break search;
            }
          } catch (error) {
            if (!(error instanceof MlflowDataError)) throw error;
          }
        }
        if (target.columns === undefined) {
          ctx.log.warn(`tables: no artifact matches ${JSON.stringify(target.spec.glob)}; table ${target.spec.table} gets only its key columns`);
          target.columns = {};
        }
      }
      for (const target of targets) {
        const clash = Object.keys(target.columns!).find((name) => name in ARTIFACT_ROW_COLUMNS);
        if (clash !== undefined) throw new Error(`tables[${target.spec.table}]: the files have a column '${clash}', which clashes with the key columns run_id, artifact_path, row; list columns explicitly`);
        target.writer = ctx.table(target.spec.table, { ...ARTIFACT_ROW_COLUMNS, ...target.columns! });
      }

      ctx.expect({ units: runs.length });

      /** A run's matching files of one table: consecutive files of one format are read together. */
      async function readTable(run: RunInfo, target: TableTarget, artifactPaths: readonly string[]): Promise<void> {
        const formats = artifactPaths.map((artifactPath) => formatFor(target, artifactPath));
        let first = 0;
        while (first < artifactPaths.length) {
          let last = first + 1;
          while (last < artifactPaths.length && last - first < FILES_PER_READ && formats[last] === formats[first]) last++;
          await readFiles(run, target, artifactPaths.slice(first, last), formats[first]!);
          first = last;
        }
      }

      async function readFiles(run: RunInfo, target: TableTarget, artifactPaths: readonly string[], format: TableFormat): Promise<void> {
        const { resolved, failure } = await resolveLocal(reader, run, artifactPaths, format, scratch);
        try {
          const rowNumbers = resolved.map(() => 0);
          for await (const { index, rows } of files.readMany(resolved.map((r) => r.file), format, target.columns!)) {
            const artifactPath = resolved[index]!.artifactPath;
            for (const values of rows) target.writer!.append([run.runId, artifactPath, rowNumbers[index]!++, ...values]);
          }
        } catch (error) {
          if (error instanceof ArtifactFileError) throw asDataError(run, resolved[error.index]!.artifactPath, format, error.reason);
          throw error;
        } finally {
          await Promise.all(resolved.filter((r) => r.downloaded).map((r) => rm(r.file, { force: true })));
        }
        if (failure !== undefined) throw failure;
      }

      await forEachRun(ctx, runs, async (run) => {
        // The listing first (its rows and, per table, the matching paths in listing order); a listing
        // that breaks off still has the files before the break read, then its error ends the unit.
        const matches = targets.map(() => [] as string[]);
        let listingError: unknown;
        try {
          for await (const artifact of reader.artifacts(run)) {
            artifacts.append([run.runId, artifact.path, artifact.size]);
            targets.forEach((target, t) => {
              if (target.pattern.test(artifact.path)) matches[t]!.push(artifact.path);
            });
          }
        } catch (error) {
          listingError = error;
        }
        for (const [t, target] of targets.entries()) await readTable(run, target, matches[t]!);
        if (listingError !== undefined) throw listingError;
      });
    } finally {
      files.close();
      await rm(scratch, { recursive: true, force: true });
      await reader.close();
    }
  },
  { optionsSchema: mlflowArtifactsOptions },
);
