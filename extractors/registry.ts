// Built-in extractors by name. Adding one is one line: '<name>': './builtin/<file>.js' (the path of
// the compiled module, relative to this file in dist/extractors/). The module must default-export
// an Extractor made with defineExtractor() from extractors/sdk/index.ts.
export const builtinExtractors: Readonly<Record<string, string>> = {
  rankings: './builtin/rankings.js',
  curves: './builtin/curves.js',
  top_models: './builtin/top-models.js',
  per_subject: './builtin/per-subject.js',
  'mlflow-runs': './builtin/mlflow-runs.js',
  'mlflow-metric-history': './builtin/mlflow-metric-history.js',
  'mlflow-artifacts': './builtin/mlflow-artifacts.js',
};

/**
 * Built-in extractors with an early start: a module whose `startEarly(env, optionsJson)` run-extractor
 * calls before it loads the SDK and the extractor, to begin slow reads (a tracking server's listing).
 */
export const builtinEarlyStarts: Readonly<Record<string, string>> = {
  'mlflow-runs': './mlflow/early-start.js',
  'mlflow-metric-history': './mlflow/early-start.js',
  'mlflow-artifacts': './mlflow/early-start.js',
};

// Why: run-extractor accepts either a built-in name or a module path; this answers "is it built in?".
export function builtinModuleUrl(name: string): URL | undefined {
  const relative = Object.hasOwn(builtinExtractors, name) ? builtinExtractors[name] : undefined;
  return relative === undefined ? undefined : new URL(relative, import.meta.url);
}
