// What the three built-in MLflow extractors share: their common options, opening the source, choosing
// the experiments (by id or name) and the runs to extract, and the per-run unit with on_bad_run.
import { z } from 'zod';
import type { ExtractorContext, ExtractorLog } from '../sdk/api.js';
import { chooseExperiments } from './experiment-choice.js';
import { READ_AHEAD_RUNS, RunDataReadAhead } from './read-ahead.js';
import { openSource } from './source.js';
import { MlflowDataError, type Experiment, type MlflowReader, type RunData, type RunInfo, type RunListing } from './types.js';

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

/** A selection whose runs are listed while they are extracted (see forEachListedRun). */
export interface StreamingSelection {
  reader: MlflowReader;
  experiments: Experiment[];
  /** The run listings, read from the source as they are consumed (once). */
  listings: AsyncIterable<RunListing>;
  /** The number of runs the listings will yield, when the store can count them cheaply (progress only). */
  count(): Promise<number | undefined>;
}

// Why: every MLflow extractor starts the same way: open the source, resolve experiments, list runs.
export async function selectRuns(ctx: ExtractorContext<MlflowSourceOptions>): Promise<Selection> {
  const { reader, experiments, listings } = await selectRunsStreaming(ctx);
  try {
    const runs: RunListing[] = [];
    for await (const listing of listings) runs.push(listing);
    return { reader, experiments, runs };
  } catch (error) {
    await reader.close();
    throw error;
  }
}

/**
 * Opens the source and resolves the experiments; the runs are listed as the caller consumes them, so
 * an extractor can extract the first runs while the rest are still being listed (a tracking server
 * answers a page of runs in about 2 ms per run: the listing is most of a REST extraction's wait).
 */
export function selectRunsStreaming(ctx: ExtractorContext<MlflowSourceOptions>): Promise<StreamingSelection> {
  return openRunSelection(ctx.options, ctx.log);
}

/** selectRunsStreaming from the options alone (an extractor's prepare step has no context yet). */
export async function openRunSelection(options: MlflowSourceOptions, log: ExtractorLog): Promise<StreamingSelection> {
  const reader = await openSource(options.source, { artifactRoot: options.artifact_root, onWarning: (message) => log.warn(message) });
  try {
    const all: Experiment[] = [];
    for await (const experiment of reader.experiments({ includeDeleted: options.include_deleted })) all.push(experiment);
    const choice = chooseExperiments(all, options.experiments);
    if ('missing' in choice) {
      const known = all.map((e) => `${e.experimentId} (${e.name})`).join(', ') || 'none';
      throw new Error(`options.experiments: no ${options.include_deleted ? '' : 'active '}experiment with id or name ${JSON.stringify(choice.missing)} in ${reader.location}; found: ${known}`);
    }
    const experiments = choice.chosen;
    const experimentIds = experiments.map((e) => e.experimentId);
    const query = { includeDeleted: options.include_deleted, filter: options.filter };
    async function* listings(): AsyncGenerator<RunListing> {
      let count = 0;
      for await (const listing of reader.runs(experimentIds, query)) {
        count++;
        yield listing;
      }
      log.info(`${reader.kind} source ${reader.location}: ${experiments.length} experiment(s), ${count} run(s)`);
    }
    return { reader, experiments, listings: listings(), count: async () => reader.countRuns?.(experimentIds, query) };
  } catch (error) {
    await reader.close();
    throw error;
  }
}

/** A selection prepared by prepareRunSelection: its runs' data is read ahead (take it with runData). */
export interface PreparedRunSelection extends StreamingSelection {
  runData(run: RunInfo): Promise<RunData>;
  /** The number of runs, once the listing (which runs ahead of the extraction) has ended. */
  total(): number | undefined;
}

/**
 * An extractor's prepare step (sdk/api.ts): the selection with its first run listing already read, so
 * a tracking server is busy with the listing's pages while the staging database is being opened, and
 * the runs' data read ahead whenever the extractor waits (read-ahead.ts).
 */
export async function prepareRunSelection(options: MlflowSourceOptions, log: ExtractorLog): Promise<PreparedRunSelection> {
  const selection = await openRunSelection(options, log);
  const readAhead = new RunDataReadAhead(selection.reader, selection.listings, READ_AHEAD_RUNS, selection.count());
  // A tracking server's first page is the server's work, not this thread's (its listing was started
  // before the extractor was loaded: early-start.ts): DuckDB loads meanwhile.
  if (selection.reader.kind !== 'rest') await readAhead.started;
  return { ...selection, listings: readAhead.listings(), runData: (run) => readAhead.runData(run), total: () => readAhead.total };
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
    await runOne(ctx, listing, work);
    ctx.progress(++done, total, 'runs');
  }
}

/**
 * forEachRun over listings that arrive while runs are extracted: the progress total is left out until
 * `listed()` knows the number of runs (a listing that runs ahead, see read-ahead.ts) or the listing has
 * ended. Listings are not kept (memory stays flat however many runs the store has): a run committed by
 * an earlier attempt, which its unit skips, is handed to `committedEarlier` instead, so the caller can
 * still take what it needs from it. Returns the number of runs listed.
 */
export async function forEachListedRun(
  ctx: ExtractorContext<MlflowSourceOptions>,
  listings: AsyncIterable<RunListing>,
  work: (run: RunInfo) => Promise<void>,
  options: { extraUnits?: number; listed?: () => number | undefined; committedEarlier?: (run: RunInfo) => Promise<void> } = {},
): Promise<number> {
  const extraUnits = options.extraUnits ?? 0;
  let count = 0;
  let done = extraUnits;
  const total = (): number | undefined => {
    const runs = options.listed?.();
    return runs === undefined ? undefined : runs + extraUnits;
  };
  ctx.progress(done, total(), 'runs');
  for await (const listing of listings) {
    if (ctx.stopRequested) return count;
    count++;
    if (listing.ok && options.committedEarlier !== undefined && ctx.isDone(listing.run.runId)) await options.committedEarlier(listing.run);
    await runOne(ctx, listing, work);
    ctx.progress(++done, total(), 'runs');
  }
  // The total is known now, if it was not while the runs were extracted.
  if (total() !== done) ctx.progress(done, done, 'runs');
  return count;
}

/** One run as one unit, with on_bad_run applied to bad data. */
async function runOne(ctx: ExtractorContext<MlflowSourceOptions>, listing: RunListing, work: (run: RunInfo) => Promise<void>): Promise<void> {
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
}
