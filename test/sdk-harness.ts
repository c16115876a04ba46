// Shared helpers for the SDK tests: spawn real extractor/publisher children with IPC, collect their
// messages, and read DuckDB files after the children are gone.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { ExecutionContext } from 'ava';
import { execa, type ResultPromise } from 'execa';
import { compiledPath, projectRoot } from '../supervisor/paths.js';

export const runExtractorJs = compiledPath('extractors/run-extractor.ts');
export const publisherJs = compiledPath('extractors/publisher.ts');
export const numbersExtractorJs = compiledPath('test/extractors/sdk-numbers.ts');
export const pythonWorker = path.join(projectRoot, 'test/fixtures/sdk-python-worker.py');
export const lockHolder = path.join(projectRoot, 'test/fixtures/sdk-hold-duckdb.mjs');

// Why: every test gets its own directory, removed when the test ends.
export function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Child {
  process: ResultPromise<{ ipc: true; serialization: 'json'; reject: false; all: true }>;
  messages: Record<string, unknown>[];
  /** Resolves with the first message matching `predicate` (or rejects when the child exits first). */
  waitFor(predicate: (message: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

// Why: one way to spawn a protocol child (Node or Python) with IPC and collect what it says.
export function spawnChild(t: ExecutionContext, file: string, args: string[], env: Record<string, string>): Child {
  const subprocess = execa(file, args, {
    ipc: true,
    serialization: 'json',
    reject: false,
    all: true,
    env,
    extendEnv: true,
    cleanup: true,
  });
  t.teardown(() => {
    if (subprocess.exitCode === null && subprocess.signalCode === null) subprocess.kill('SIGKILL');
  });
  const messages: Record<string, unknown>[] = [];
  const waiters: { predicate: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }[] = [];
  subprocess.on('message', (message: unknown) => {
    const value = message as Record<string, unknown>;
    messages.push(value);
    for (const waiter of [...waiters]) {
      if (waiter.predicate(value)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(value);
      }
    }
  });
  const exited = subprocess.then((result) => result);
  return {
    process: subprocess,
    messages,
    waitFor(predicate) {
      const seen = messages.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ predicate, resolve });
        void exited.then((result) => reject(new Error(`child exited (${result.exitCode ?? result.signal}) before the awaited message; output:\n${result.all}`)));
      });
    },
  };
}

export interface ExtractorEnv {
  staging: string;
  options?: Record<string, unknown>;
  heartbeatTimeoutMs?: number;
  rssLimitBytes?: number;
}

// Why: the environment the daemon gives an extractor child (names from protocol.ts childEnv).
export function extractorEnv(input: ExtractorEnv): Record<string, string> {
  return {
    DUCKVISOR_STAGING: input.staging,
    DUCKVISOR_OPTIONS: JSON.stringify(input.options ?? {}),
    DUCKVISOR_RUN_ID: 'run-test',
    DUCKVISOR_JOB: 'numbers',
    DUCKVISOR_ATTEMPT: '1',
    DUCKVISOR_HEARTBEAT_TIMEOUT_MS: String(input.heartbeatTimeoutMs ?? 3000),
    ...(input.rssLimitBytes === undefined ? {} : { DUCKVISOR_RSS_LIMIT_BYTES: String(input.rssLimitBytes) }),
  };
}

export function spawnExtractor(t: ExecutionContext, extractorModule: string, input: ExtractorEnv): Child {
  return spawnChild(t, process.execPath, [runExtractorJs, extractorModule], extractorEnv(input));
}

export interface PublishEnv {
  staging: string;
  warehouse: string;
  tables: string[];
  job?: string;
  runId?: string;
}

export function spawnPublisher(t: ExecutionContext, input: PublishEnv): Child {
  return spawnChild(t, process.execPath, [publisherJs], {
    DUCKVISOR_STAGING: input.staging,
    DUCKVISOR_WAREHOUSE: input.warehouse,
    DUCKVISOR_JOB: input.job ?? 'numbers',
    DUCKVISOR_RUN_ID: input.runId ?? 'run-test',
    DUCKVISOR_TABLES: JSON.stringify(input.tables),
    DUCKVISOR_HEARTBEAT_TIMEOUT_MS: '600',
  });
}

// Why: read a DuckDB file the children have released; the connection is closed before returning.
export async function withDatabase<T>(file: string, work: (query: (sql: string) => Promise<unknown[][]>) => Promise<T>): Promise<T> {
  const instance = await DuckDBInstance.create(file);
  const connection = await instance.connect();
  try {
    return await work(async (sql) => (await connection.runAndReadAll(sql)).getRows() as unknown[][]);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/** Deterministic PRNG (mulberry32) so random kill points are reproducible from the seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
