// Which files a lint run looks at: the paths given, directories walked (minus skipped folders),
// split by language by extension.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Language } from './types.js';

const EXTENSIONS: Record<string, Language> = {
  '.ts': 'typescript',
  '.tsx': 'typescript',
  '.mts': 'typescript',
  '.cts': 'typescript',
  '.js': 'typescript',
  '.jsx': 'typescript',
  '.mjs': 'typescript',
  '.cjs': 'typescript',
  '.py': 'python',
};

/** The language a file is linted as, or undefined when its extension is not linted. */
export function languageOf(file: string): Language | undefined {
  if (file.endsWith('.d.ts') || file.endsWith('.d.mts') || file.endsWith('.d.cts')) return undefined;
  return EXTENSIONS[path.extname(file).toLowerCase()];
}

/** Raised when a path given on the command line does not exist. */
export class MissingPathError extends Error {}

export interface FileSet {
  typescript: string[];
  python: string[];
}

/** Expands the given paths into the files to lint (sorted, deduplicated, as given relative to cwd). */
export function collectFiles(paths: readonly string[], skipDirectories: readonly string[]): FileSet {
  const skip = new Set(skipDirectories);
  const seen = new Set<string>();
  const result: FileSet = { typescript: [], python: [] };
  const add = (file: string): void => {
    const language = languageOf(file);
    if (language === undefined || seen.has(file)) return;
    seen.add(file);
    result[language].push(file);
  };
  const walk = (dir: string): void => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!skip.has(entry.name)) walk(full);
      } else if (entry.isFile()) {
        add(full);
      }
    }
  };
  for (const given of paths) {
    let stats;
    try {
      stats = statSync(given);
    } catch {
      throw new MissingPathError(`no such file or directory: ${given}`);
    }
    if (stats.isDirectory()) walk(given);
    else add(path.normalize(given));
  }
  return result;
}
