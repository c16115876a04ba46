// What the three built-in MLflow extractors share: their common options, opening the source, choosing
// the experiments (by id or name) and the runs to extract, and the per-run unit with on_bad_run.
import { z } from 'zod';
import type { ExtractorContext } from '../sdk/api.js';
import { openSource } from './source.js';
import { MlflowDataError, type Experiment, type MlflowReader, type RunInfo, type RunListing } from './types.js';

const experimentRef = z
  .union([z.string().min(1), z.number()])
  .superRefine((value, check) => {
    if (typeof value === 'number' && !(Number.isSafeInteger(value) && value >= 0)) {
      check.addIssue({ code: 'custom', message: `experiment id ${value} is not exact: ids above 2^53 (e.g. 18-digit ids) lose digits as YAML/JSON numbers; quote them` });
    }
  })
  .transform(String);

/** Options every MLflow extractor accepts (spread into each extractor's zod object). */
export const mlflowSourceOptions = {
  /** A path or file: URI (file store), sqlite:///path/mlflow.db (SQL store) or http(s):// (tracking server); default MLFLOW_TRACKING_URI. */
  source: z.string().min(1).optional(),
  /** Experiments by id or name; default all. */
  experiments: z.array(experimentRef).optional(),
  /** MLflow run filter, e.g. "params.classifier = 'LogReg' AND attributes.status = 'FINISHED'". */
  filter: z.string().optional(),
  /** Also extract deleted runs and experiments (lifecycle_stage 'deleted', .trash). */
  include_deleted: z.boolean().default(false),
  /** A run with bad data is skipped and listed in the run's result (skip) or fails the extraction (fail). */
  on_bad_run: z.enum(['skip', 'fail']).default('skip'),
  /** SQL store only: where run artifacts are when their recorded absolute paths do not exist. */
  artifact_root: z.string().optional(),
  /** SDK options, passed through. */
  batch_rows: z.number().optional(),
  threads: z.number().optional(),
};

const sourceOnlyObject = z.object(mlflowSourceOptions);
export type MlflowSourceOptions = z.infer<typeof sourceOnlyObject>;

export interface Selection {
  reader: MlflowReader;
  experiments: Experiment[];
  /** Run listings (small: ids and attributes only); the per-run data is read per unit. */
  runs: RunListing[];
}

// Why: every MLflow extractor starts the same way: open the source, resolve experiments, list runs.
export async function selectRuns(ctx: ExtractorContext<MlflowSourceOptions>): Promise<Selection> {
  const options = ctx.options;
  const reader = await openSource(options.source, { artifactRoot: options.artifact_root, onWarning: (message) => ctx.log.warn(message) });
  try {
    const all: Experiment[] = [];
    for await (const experiment of reader.experiments({ includeDeleted: options.include_deleted })) all.push(experiment);
    let experiments = all;
    if (options.experiments !== undefined) {
      experiments = [];
      for (const ref of options.experiments) {
        const found = all.find((e) => e.experimentId === ref) ?? all.find((e) => e.name === ref);
        if (found === undefined) {
          const known = all.map((e) => `${e.experimentId} (${e.name})`).join(', ') || 'none';
          throw new Error(`options.experiments: no ${options.include_deleted ? '' : 'active '}experiment with id or name ${JSON.stringify(ref)} in ${reader.location}; found: ${known}`);
        }
        if (!experiments.includes(found)) experiments.push(found);
      }
    }
    const runs: RunListing[] = [];
    for await (const listing of reader.runs(experiments.map((e) => e.experimentId), { includeDeleted: options.include_deleted, filter: options.filter })) {
      runs.push(listing);
    }
    ctx.log.info(`${reader.kind} source ${reader.location}: ${experiments.length} experiment(s), ${runs.length} run(s)`);
    return { reader, experiments, runs };
  } catch (error) {
    await reader.close();
    throw error;
  }
}

/**
 * Runs `work` for every run as one unit (key = run id), reporting progress per run. A run whose data
 * is bad (MlflowDataError, from the listing or from `work`) is rolled back and skipped with
 * ctx.skip(runId, message), or fails the extraction when on_bad_run is 'fail'.
 */
export async function forEachRun(
  ctx: ExtractorContext<MlflowSourceOptions>,
  runs: readonly RunListing[],
  work: (run: RunInfo) => Promise<void>,
  extraUnits = 0,
): Promise<void> {
  const total = runs.length + extraUnits;
  let done = extraUnits;
  ctx.progress(done, total, 'runs');
  for (const listing of runs) {
    if (ctx.stopRequested) return;
    let failure: MlflowDataError | undefined;
    if (!listing.ok) failure = listing.error;
    else {
      try {
        await ctx.unit(listing.run.runId, () => work(listing.run));
      } catch (error) {
        if (!(error instanceof MlflowDataError)) throw error;
        failure = error;
      }
    }
    if (failure !== undefined) {
      if (ctx.options.on_bad_run === 'fail') throw new Error(`${failure.message} (on_bad_run: fail)`);
      ctx.skip(listing.ok ? listing.run.runId : listing.runId, failure.message);
    }
    ctx.progress(++done, total, 'runs');
  }
}
