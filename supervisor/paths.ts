// Where the package's own files are, whether running from dist/ (compiled) or from a test.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'supervisor'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the duckvisor package root above ${start}`);
    dir = parent;
  }
}

/** The package root (the folder holding package.json). */
export const projectRoot = findRoot(path.dirname(fileURLToPath(import.meta.url)));

/** Compiled output root (dist/); compiled modules and child entry points live here. */
export const distRoot = path.join(projectRoot, 'dist');

/** Absolute path of a compiled module, given its source path relative to the root, e.g. 'extractors/publisher.ts'. */
export function compiledPath(sourceRelative: string): string {
  return path.join(distRoot, sourceRelative.replace(/\.ts$/, '.js'));
}
