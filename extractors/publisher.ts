// The publisher child: `node dist/extractors/publisher.js`, spawned by the daemon (one at a time)
// after an extractor sent `ready` and exited 0. It opens the warehouse read-write (waiting while
// another process holds its lock), ATTACHes the run's staging file READ_ONLY, and in ONE transaction
// replaces the job's tables and views and records each in _duckvisor_publishes. Only after COMMIT
// and CHECKPOINT is the staging file deleted. A kill at any point leaves the previous version.
//
// Environment: DUCKVISOR_STAGING, DUCKVISOR_WAREHOUSE, DUCKVISOR_JOB, DUCKVISOR_RUN_ID,
// DUCKVISOR_TABLES (JSON array of table names); optional DUCKVISOR_HEARTBEAT_TIMEOUT_MS,
// DUCKVISOR_RSS_LIMIT_BYTES. Exit 0 = published; 1 = failed (message on stderr and as a `log`).
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { openChannel, type Channel } from './sdk/channel.js';
import { duckdb } from './sdk/duckdb.js';
import { duckdbSettings, parseRssLimit, temporaryDirectoryFor } from './sdk/limits.js';
import { childEnv } from './sdk/protocol.js';
import { checkIdentifier } from './sdk/table.js';

/** The publish registry in the warehouse: who published which table, when, with how many rows. */
export const PUBLISHES_TABLE = '_duckvisor_publishes';
/** Environment variable holding the JSON array of tables to publish. */
export const TABLES_ENV = 'DUCKVISOR_TABLES';
const MAX_LOCK_BACKOFF_MS = 5000;
const FIRST_LOCK_BACKOFF_MS = 100;

// Why: DuckDB names the process holding a database's lock; the operator should see that pid.
export function lockHolderPid(message: string): number | undefined | null {
  if (!/Could not set lock on file|Conflicting lock is held/i.test(message)) return null;
  const match = /Conflicting lock is held in .*\(PID (\d+)\)/.exec(message);
  return match ? Number(match[1]) : undefined;
}

function sqlString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set; the publisher needs it (see extractors/publisher.ts)`);
  return value;
}

function parseTables(raw: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    throw new Error(`${TABLES_ENV} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((name) => typeof name === 'string')) {
    throw new Error(`${TABLES_ENV} must be a JSON array of table names (got ${raw.slice(0, 200)})`);
  }
  for (const name of parsed as string[]) checkIdentifier('table', name);
  return [...new Set(parsed as string[])];
}

async function openWarehouse(file: string, settings: Record<string, string>, channel: Channel): Promise<DuckDBInstance> {
  let delay = FIRST_LOCK_BACKOFF_MS;
  let attempt = 0;
  let lastHolder: number | undefined | null = null;
  for (;;) {
    try {
      return await duckdb().DuckDBInstance.create(file, settings);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const holder = lockHolderPid(message);
      if (holder === null) throw new Error(`cannot open the warehouse ${file}: ${message}`);
      attempt++;
      if (holder !== lastHolder || attempt % 10 === 0) {
        channel.log('warn', `waiting for warehouse lock (held by pid ${holder ?? 'unknown'})`);
        lastHolder = holder;
      }
      await sleep(delay);
      delay = Math.min(MAX_LOCK_BACKOFF_MS, delay * 2);
    }
  }
}

async function scalar(connection: DuckDBConnection, sql: string, params: string[] = []): Promise<unknown> {
  const reader = await connection.runAndReadAll(sql, params);
  return reader.getRows()[0]?.[0];
}

interface PublishInput {
  staging: string;
  warehouse: string;
  job: string;
  runId: string;
  tables: string[];
}

async function checkOwnership(connection: DuckDBConnection, input: PublishInput, names: string[]): Promise<void> {
  for (const name of names) {
    const exists = await scalar(
      connection,
      `SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() AND table_schema = 'main' AND table_name = $1`,
      [name],
    );
    if (Number(exists) === 0) continue;
    const owner = await connection.runAndReadAll(
      `SELECT job, run_id, CAST(published_at AS VARCHAR) FROM main.${PUBLISHES_TABLE} WHERE table_name = $1 ORDER BY published_at DESC LIMIT 1`,
      [name],
    );
    const row = owner.getRows()[0];
    if (row === undefined) {
      throw new Error(
        `table '${name}' already exists in the warehouse ${input.warehouse} but was not published by duckvisor; ` +
          `refusing to overwrite it for job '${input.job}' (drop or rename it in the warehouse, or rename the job's table)`,
      );
    }
    if (String(row[0]) !== input.job) {
      throw new Error(
        `table '${name}' in the warehouse ${input.warehouse} belongs to job '${String(row[0])}' (run ${String(row[1])}, published ${String(row[2])}); ` +
          `refusing to overwrite it with job '${input.job}'. Give one of the jobs' tables another name`,
      );
    }
  }
}

async function publish(input: PublishInput, channel: Channel): Promise<{ rows: number; views: number }> {
  if (!existsSync(input.staging)) {
    throw new Error(`the staging database ${input.staging} does not exist: nothing to publish (was it already published?)`);
  }
  mkdirSync(path.dirname(input.warehouse), { recursive: true });
  const settings = duckdbSettings({ rssLimitBytes: parseRssLimit(process.env[childEnv.rssLimit]), databasePath: input.warehouse });
  const instance = await openWarehouse(input.warehouse, settings, channel);
  const connection = await instance.connect();
  try {
    await connection.run(`ATTACH ${sqlString(input.staging)} AS staging (READ_ONLY)`);
    const stagingTables = new Set(
      (await connection.runAndReadAll(`SELECT table_name FROM information_schema.tables WHERE table_catalog = 'staging' AND table_schema = 'main'`))
        .getRows()
        .map((row) => String(row[0])),
    );
    const missing = input.tables.filter((name) => !stagingTables.has(name));
    if (missing.length > 0) throw new Error(`the staging database ${input.staging} has no table(s) ${missing.join(', ')} listed in ${TABLES_ENV}`);
    const views = stagingTables.has('_duckvisor_views')
      ? (await connection.runAndReadAll(`SELECT name, sql FROM staging.main._duckvisor_views ORDER BY name`)).getRows().map((row) => ({ name: String(row[0]), sql: String(row[1]) }))
      : [];
    for (const view of views) checkIdentifier('view', view.name);

    await connection.run(
      `CREATE TABLE IF NOT EXISTS main.${PUBLISHES_TABLE} (job VARCHAR NOT NULL, run_id VARCHAR NOT NULL, table_name VARCHAR NOT NULL, rows BIGINT, published_at TIMESTAMP NOT NULL)`,
    );
    await checkOwnership(connection, input, [...input.tables, ...views.map((view) => view.name)]);

    channel.log('info', `publishing ${input.tables.length} table(s) and ${views.length} view(s) of job '${input.job}' to ${input.warehouse}`);
    let rows = 0;
    await connection.run('BEGIN TRANSACTION');
    try {
      let done = 0;
      for (const name of input.tables) {
        await connection.run(`CREATE OR REPLACE TABLE main."${name}" AS SELECT * FROM staging.main."${name}"`);
        const count = Number(await scalar(connection, `SELECT count(*) FROM main."${name}"`));
        rows += count;
        await connection.run(`INSERT INTO main.${PUBLISHES_TABLE} VALUES ($1, $2, $3, $4, current_timestamp)`, [input.job, input.runId, name, count]);
        channel.progress(++done, input.tables.length + views.length, 'tables');
      }
      for (const view of views) {
        try {
          await connection.run(`CREATE OR REPLACE VIEW main."${view.name}" AS ${view.sql}`);
        } catch (error) {
          throw new Error(`view '${view.name}' cannot be created in the warehouse: ${error instanceof Error ? error.message : String(error)}`);
        }
        await connection.run(`INSERT INTO main.${PUBLISHES_TABLE} VALUES ($1, $2, $3, NULL, current_timestamp)`, [input.job, input.runId, view.name]);
        channel.progress(++done, input.tables.length + views.length, 'tables');
      }
      await connection.run('COMMIT');
    } catch (error) {
      await connection.run('ROLLBACK').catch(() => undefined);
      throw error;
    }
    await connection.run('CHECKPOINT');
    await connection.run('DETACH staging');
    return { rows, views: views.length };
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

// Why: the staging file is removed only now, after the publish committed and was checkpointed.
function removeStaging(staging: string): void {
  rmSync(staging, { force: true });
  rmSync(`${staging}.wal`, { force: true });
  rmSync(temporaryDirectoryFor(staging), { recursive: true, force: true });
}

async function main(): Promise<number> {
  const channel = openChannel({ heartbeatTimeoutMs: Number(process.env[childEnv.heartbeatTimeout]) || 30_000 });
  channel.hello('publisher');
  try {
    const input: PublishInput = {
      staging: path.resolve(required(childEnv.staging)),
      warehouse: path.resolve(required(childEnv.warehouse)),
      job: required(childEnv.job),
      runId: required(childEnv.runId),
      tables: parseTables(required(TABLES_ENV)),
    };
    const result = await publish(input, channel);
    removeStaging(input.staging);
    channel.log('info', `published ${input.tables.length} table(s) (${result.rows} rows) and ${result.views} view(s) of job '${input.job}' run ${input.runId}`);
    await channel.drain();
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`publisher failed: ${message}\n`);
    channel.log('error', `publish failed: ${message}`);
    await channel.drain();
    return 1;
  } finally {
    channel.close();
  }
}

process.exit(await main());
