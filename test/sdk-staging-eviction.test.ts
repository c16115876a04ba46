// The small staging layout's eviction after a group commit (context.ts StagingSession.afterCommit): which
// statements it sends, and what happens when setting memory_limit back fails. The session is real (a staging
// file with the small layout); the connection handed to afterCommit is a recording stand-in whose answers
// each test chooses, because a real DuckDB fails that statement only under a race.
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import type { DuckDBConnection } from '@duckdb/node-api';
import { StagingSession } from '../extractors/sdk/context.js';
import { tempDir } from './sdk-harness.js';

const MiB = 1024 * 1024;

interface Answers {
  /** duckdb_memory() rows as [tag, bytes]; an Error makes the query fail. */
  memory: [string, number][] | Error;
  /** How many times setting the limit back fails before it succeeds (Infinity: always). */
  restoreFailures: number;
}

function recordingConnection(answers: Answers): { connection: DuckDBConnection; statements: string[] } {
  const statements: string[] = [];
  let restoreFailures = answers.restoreFailures;
  const fake = {
    async runAndReadAll(sql: string) {
      statements.push(sql);
      if (answers.memory instanceof Error) throw answers.memory;
      const rows = answers.memory;
      return { getRows: () => rows };
    },
    async run(sql: string) {
      statements.push(sql);
      if (sql.includes("'8MiB'") && restoreFailures > 0) {
        restoreFailures--;
        throw new Error('Out of Memory Error: failed to allocate data of size 2.0 KiB (1.5 MiB/1.5 MiB used)');
      }
    },
  };
  return { connection: fake as unknown as DuckDBConnection, statements };
}

async function smallSession(t: ExecutionContext): Promise<StagingSession> {
  const session = await StagingSession.open(path.join(tempDir(t), 'evict.duckdb'), { memory_limit: '8MiB', threads: '1' }, { rowGroupRows: 2048, evictCacheAboveBytes: 2 * MiB });
  t.teardown(() => session.close({ checkpoint: false }));
  return session;
}

const setStatements = (statements: string[]): string[] => statements.filter((sql) => sql.startsWith('SET '));

test('a cache past the threshold is evicted down to the other memory plus floor and headroom, then the limit is set back', async (t) => {
  const session = await smallSession(t);
  const { connection, statements } = recordingConnection({ memory: [['BASE_TABLE', 5 * MiB], ['ART_INDEX', 0.5 * MiB]], restoreFailures: 0 });
  await session.afterCommit(connection);
  // 0.5 MiB besides the cache + 1 MiB floor + 512 KiB headroom = 2,048 KiB.
  t.deepEqual(setStatements(statements), ["SET memory_limit = '2048KiB'", "SET memory_limit = '8MiB'"]);
});

test('a cache at or below the threshold, or a failed memory query, sends no SET at all', async (t) => {
  const session = await smallSession(t);
  const small = recordingConnection({ memory: [['BASE_TABLE', 2 * MiB], ['ART_INDEX', 3 * MiB]], restoreFailures: 0 });
  await session.afterCommit(small.connection);
  t.deepEqual(setStatements(small.statements), []);
  const failing = recordingConnection({ memory: new Error('Out of Memory Error'), restoreFailures: 0 });
  await session.afterCommit(failing.connection);
  t.deepEqual(setStatements(failing.statements), []);
});

test('setting the limit back is retried until it succeeds', async (t) => {
  const session = await smallSession(t);
  const { connection, statements } = recordingConnection({ memory: [['BASE_TABLE', 4 * MiB]], restoreFailures: 3 });
  await session.afterCommit(connection);
  t.deepEqual(setStatements(statements), ["SET memory_limit = '1536KiB'", ...Array.from({ length: 4 }, () => "SET memory_limit = '8MiB'")]);
});

test('when the limit can never be set back, afterCommit fails naming the staging file and the limit', async (t) => {
  const session = await smallSession(t);
  const { connection, statements } = recordingConnection({ memory: [['BASE_TABLE', 4 * MiB]], restoreFailures: Number.POSITIVE_INFINITY });
  const error = await t.throwsAsync(session.afterCommit(connection));
  t.regex(error?.message ?? '', /evict\.duckdb: memory_limit could not be set back to 8MiB after evicting its cached blocks \(Out of Memory Error/);
  t.is(setStatements(statements).filter((sql) => sql.includes("'8MiB'")).length, 5, 'five attempts');
});
