// The extractor child's entry point: `node dist/extractors/run-extractor.js <name | ./module.js>`.
// argv[2] is a built-in extractor name (extractors/registry.ts) or the path of a compiled module
// (absolute, or relative to the working directory) whose default export is an Extractor. Everything
// else comes from the DUCKVISOR_* environment (extractors/sdk/protocol.ts `childEnv`).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { builtinEarlyStarts, builtinExtractors, builtinModuleUrl } from './registry.js';
import { childEnv } from './sdk/child-env.js';
import type { Extractor } from './sdk/index.js';

// A built-in extractor's early start (registry.ts) goes first: its slow reads (a tracking server's
// listing) then run while the rest is loaded. Anything it cannot do is left to the extractor.
const early = Object.hasOwn(builtinEarlyStarts, process.argv[2] ?? '') ? builtinEarlyStarts[process.argv[2]!] : undefined;
if (early !== undefined) {
  try {
    const { startEarly } = (await import(new URL(early, import.meta.url).href)) as { startEarly: (env: NodeJS.ProcessEnv, options: string | undefined) => Promise<void> };
    await startEarly(process.env, process.env[childEnv.options]);
  } catch {
    // the extractor opens its source itself, and reports what is wrong
  }
}
// DuckDB's allocator reads its configuration from the environment once, so it is set before anything
// loads @duckdb/node-api (hence the dynamic imports below). An operator's own setting wins.
const { DUCKDB_ALLOCATOR_CONF } = await import('./sdk/limits.js');
process.env['DUCKDB_JE_MALLOC_CONF'] ??= DUCKDB_ALLOCATOR_CONF;
const { exitCodes, isExtractor, runExtractor } = await import('./sdk/index.js');

function usage(message: string): never {
  process.stderr.write(`run-extractor: ${message}\n`);
  process.exit(exitCodes.failed);
}

function looksLikePath(spec: string): boolean {
  return spec.includes('/') || spec.includes(path.sep) || /\.(c|m)?js$/.test(spec);
}

// Why: resolve the argument to a module URL, with an error that lists what would have worked.
function moduleUrlFor(spec: string): URL {
  const builtin = builtinModuleUrl(spec);
  if (builtin !== undefined) return builtin;
  if (!looksLikePath(spec)) {
    const known = Object.keys(builtinExtractors);
    usage(`'${spec}' is neither a built-in extractor (${known.length > 0 ? known.join(', ') : 'none registered'}) nor a module path like ./my-extractor.js`);
  }
  const file = path.resolve(process.cwd(), spec);
  if (!existsSync(file)) usage(`extractor module ${file} does not exist (resolved from '${spec}' against ${process.cwd()})`);
  return pathToFileURL(file);
}

async function loadExtractor(spec: string): Promise<Extractor<unknown>> {
  const url = moduleUrlFor(spec);
  let loaded: { default?: unknown };
  try {
    loaded = (await import(url.href)) as { default?: unknown };
  } catch (error) {
    usage(`cannot load extractor module ${url.pathname}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
  const candidate = loaded.default;
  if (!isExtractor(candidate)) {
    const got = candidate === undefined ? 'no default export' : `a default export of type ${typeof candidate}${typeof candidate === 'object' && candidate !== null ? ` with keys ${Object.keys(candidate).join(', ') || '(none)'}` : ''}`;
    usage(`module ${url.pathname} must default-export an extractor made with defineExtractor(name, main) (found ${got})`);
  }
  return candidate;
}

const spec = process.argv[2];
if (spec === undefined || spec === '') usage('usage: run-extractor <built-in name | path/to/extractor.js>');
await runExtractor(await loadExtractor(spec));
