// Lint configuration: the built-in defaults and the optional `.duckvisor-lint.json` that extends or
// replaces them (which calls count as extraction sources, progress reports and bulk writes).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/**
 * Call patterns are written `name` or `receiver.name`, matched against the called function's name
 * (and the last segment of its receiver) case-insensitively with underscores ignored, so
 * `search_runs` also matches `searchRuns`. `*` matches any run of characters: `*progress*`.
 */
export type CallPattern = string;

/** The effective configuration handed to both analyzers. */
export interface LintConfig {
  /** Calls whose results, when looped over, are extraction sources (MLflow, DB cursors, listings). */
  extractionSources: CallPattern[];
  /** Calls that count as reporting progress or liveness inside a loop. */
  progressCalls: CallPattern[];
  /** String fragments that make a print/log call count as progress, e.g. `[HEARTBEAT]`. */
  progressMarkers: string[];
  /** Calls that write a whole collection to a database or file at once. */
  bulkWriteCalls: CallPattern[];
  /** Directory names never descended into when walking. */
  skipDirectories: string[];
  /** Where the configuration came from (a file path, or 'defaults'). */
  source: string;
}

/** Why: the defaults are documented in docs/lint.md; keep the two in step. */
export const DEFAULT_CONFIG: Omit<LintConfig, 'source'> = {
  extractionSources: [
    // MLflow client / fluent API and its REST equivalents
    'search_runs', 'search_experiments', 'search_registered_models', 'search_model_versions',
    'search_logged_models', '*client.search*', 'get_metric_history', 'get_metric_history_bulk_interval',
    'list_artifacts', 'list_run_infos', 'list_experiments', 'iter_runs', 'iter_experiments',
    // DB cursors
    'execute', 'cursor', 'fetchmany', 'fetchone', 'iterate', 'execute_iter', 'stream',
    // file listings
    'os.listdir', 'os.scandir', 'os.walk', 'glob', 'iglob', 'rglob', 'iterdir', 'readdir', 'readdirSync',
    'opendir', 'opendirSync', 'globSync',
  ],
  progressCalls: [
    '*progress*', '*heartbeat*', 'on_batch_complete', 'tqdm', 'trange', 'track', '*tracker*.update',
    '*tracker*.tick', 'pbar.*', '*bar.update', '*bar.tick',
  ],
  progressMarkers: ['[HEARTBEAT]', '[PROGRESS]'],
  bulkWriteCalls: [
    'executemany', '*insert*', '*append*', '*write*', 'to_sql', 'to_parquet', 'register', 'from_df',
    'bulk*', 'save*', 'persist*', 'copy_records*', 'load_table*',
  ],
  skipDirectories: ['node_modules', 'dist', '.venv', 'venv', '.git', '__pycache__', '.tox', '.mypy_cache'],
};

const patternList = z.array(z.string().min(1)).optional();

const configFileSchema = z.strictObject({
  extractionSources: patternList,
  extraExtractionSources: patternList,
  progressCalls: patternList,
  extraProgressCalls: patternList,
  progressMarkers: patternList,
  extraProgressMarkers: patternList,
  bulkWriteCalls: patternList,
  extraBulkWriteCalls: patternList,
  skipDirectories: patternList,
  extraSkipDirectories: patternList,
});

export const CONFIG_FILE_NAME = '.duckvisor-lint.json';

/** Raised for a configuration the user must fix; the message names the file and field. */
export class LintConfigError extends Error {}

/** Finds `.duckvisor-lint.json` in `startDir` or the nearest ancestor (stopping at a git root). */
export function findConfigFile(startDir: string): string | undefined {
  let dir = path.resolve(startDir);
  for (;;) {
    const candidate = path.join(dir, CONFIG_FILE_NAME);
    if (existsSync(candidate)) return candidate;
    if (existsSync(path.join(dir, '.git'))) return undefined;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** Loads and validates a config file (or returns the defaults when `file` is undefined). */
export function loadLintConfig(file: string | undefined): LintConfig {
  if (file === undefined) return { ...DEFAULT_CONFIG, source: 'defaults' };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new LintConfigError(`cannot read lint config ${file}: ${(error as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new LintConfigError(`lint config ${file} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = configFileSchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((issue) => `${issue.path.join('.') || '(top level)'}: ${issue.message}`)
      .join('; ');
    throw new LintConfigError(
      `lint config ${file} is invalid: ${problems}. Allowed fields: ${Object.keys(configFileSchema.shape).join(', ')} (each a list of strings).`,
    );
  }
  const given = parsed.data;
  const merge = (base: string[], replace: string[] | undefined, extra: string[] | undefined): string[] => [
    ...(replace ?? base),
    ...(extra ?? []),
  ];
  return {
    extractionSources: merge(DEFAULT_CONFIG.extractionSources, given.extractionSources, given.extraExtractionSources),
    progressCalls: merge(DEFAULT_CONFIG.progressCalls, given.progressCalls, given.extraProgressCalls),
    progressMarkers: merge(DEFAULT_CONFIG.progressMarkers, given.progressMarkers, given.extraProgressMarkers),
    bulkWriteCalls: merge(DEFAULT_CONFIG.bulkWriteCalls, given.bulkWriteCalls, given.extraBulkWriteCalls),
    skipDirectories: merge(DEFAULT_CONFIG.skipDirectories, given.skipDirectories, given.extraSkipDirectories),
    source: file,
  };
}
