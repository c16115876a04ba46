// Local-file helpers shared by the file-store and SQL readers: sorted directory listings, recursive
// walks that follow symlinks (a broken one is an error naming it), and `file:` URI → path.
import { createReadStream, type Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { MlflowDataError, type ArtifactFile, type RunInfo } from './types.js';

/** Directory entries sorted by name; a missing directory is empty. */
export async function sortedEntries(dir: string): Promise<Dirent[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** True when `p` is a directory (following symlinks). */
export async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Files under `dir`, recursively, as [POSIX relative path, absolute path]; a broken symlink or unlistable folder is an error. */
export async function* walkFiles(dir: string, runId: string | undefined, prefix = ''): AsyncGenerator<[string, string]> {
  let list: Dirent[];
  try {
    list = await sortedEntries(dir);
  } catch (error) {
    throw new MlflowDataError(runId, dir, `cannot list directory (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  for (const entry of list) {
    const full = path.join(dir, entry.name);
    const key = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    let directory = entry.isDirectory();
    if (entry.isSymbolicLink()) {
      try {
        directory = (await stat(full)).isDirectory();
      } catch (error) {
        throw new MlflowDataError(runId, full, `unreadable file (${(error as NodeJS.ErrnoException).code ?? String(error)}: broken symlink?)`);
      }
    }
    if (directory) yield* walkFiles(full, runId, key);
    else yield [key, full];
  }
}

// Why: both local readers list a run's artifact folder the same way (run-relative paths and sizes).
export async function* walkArtifactDir(root: string, runId: string): AsyncGenerator<ArtifactFile> {
  for await (const [relative, file] of walkFiles(root, runId)) {
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (error) {
      throw new MlflowDataError(runId, file, `unreadable artifact (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    }
    yield { path: relative, size };
  }
}

/** A local path for a `file:` URI, an absolute or a relative path; undefined for remote schemes (s3:, mlflow-artifacts:, …). */
export function localPathOf(uri: string): string | undefined {
  if (uri.startsWith('file:')) {
    try {
      return fileURLToPath(uri.startsWith('file://') ? uri : `file://${uri.slice(5)}`);
    } catch {
      return undefined;
    }
  }
  if (path.isAbsolute(uri)) return uri;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(uri)) return undefined;
  return uri;
}

/**
 * Why: the file-store and SQL readers differ only in where a run's artifact directory is; listing,
 * resolving and opening artifacts below it is the same code for both.
 */
export abstract class LocalArtifacts {
  /** The run's artifact directory on this machine, or undefined when it has none. */
  protected abstract artifactRoot(run: RunInfo): Promise<string | undefined>;

  async *artifacts(run: RunInfo): AsyncGenerator<ArtifactFile> {
    const root = await this.artifactRoot(run);
    if (root !== undefined) yield* walkArtifactDir(root, run.runId);
  }

  async localArtifactPath(run: RunInfo, artifactPath: string): Promise<string | undefined> {
    const root = await this.artifactRoot(run);
    return root === undefined ? undefined : path.join(root, ...artifactPath.split('/'));
  }

  async openArtifact(run: RunInfo, artifactPath: string): Promise<Readable> {
    const file = await this.localArtifactPath(run, artifactPath);
    if (file === undefined) throw new MlflowDataError(run.runId, artifactPath, 'artifact not found');
    return createReadStream(file);
  }
}
