// The MLflow extractors' early start (registry.ts builtinEarlyStarts): run-extractor calls it before it
// loads the SDK, zod and the extractor (~150 ms of the main thread). For a tracking-server source the
// reader is opened and its listing started now (rest-store.ts startSelection), so the server answers the
// first pages of runs meanwhile; openSource hands this reader to the extractor. The options are read
// leniently here: anything unexpected just skips the early start, and the extractor validates them as
// usual (an early listing that does not match what it asks for is stopped, not used).
import { offerStartedReader } from './source.js';

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

// Why: the one thing run-extractor calls for an MLflow extractor before anything heavy is loaded.
/** Opens a tracking-server source named by the job's options (or MLFLOW_TRACKING_URI) and starts its listing. */
export async function startEarly(env: NodeJS.ProcessEnv, optionsJson: string | undefined): Promise<void> {
  let options: Record<string, unknown> | undefined;
  try {
    options = optionsJson === undefined || optionsJson.trim() === '' ? {} : record(JSON.parse(optionsJson));
  } catch {
    return;
  }
  if (options === undefined) return;
  const source = typeof options['source'] === 'string' && options['source'].trim() !== '' ? options['source'].trim() : env['MLFLOW_TRACKING_URI'];
  if (source === undefined || !/^https?:\/\//i.test(source)) return;
  const includeDeleted = options['include_deleted'] ?? false;
  const filter = options['filter'];
  const experiments = options['experiments'];
  if (typeof includeDeleted !== 'boolean' || (filter !== undefined && typeof filter !== 'string')) return;
  if (experiments !== undefined && !(Array.isArray(experiments) && experiments.every((ref) => typeof ref === 'string' || Number.isSafeInteger(ref)))) return;
  const { RestReader, restOptionsFromEnv } = await import('./rest-store.js');
  const reader = new RestReader(source, restOptionsFromEnv(env));
  reader.startSelection({ includeDeleted, filter, experiments: (experiments as (string | number)[] | undefined)?.map(String) });
  offerStartedReader(source, reader);
}
