// Test helpers for the derived extractors: a small warehouse DuckDB file with the tables the MLflow
// extractors publish, a real `run-extractor` child over IPC, and reads of its staging tables.
import { fork } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance, type DuckDBValue } from '@duckdb/node-api';
import type { ChildMessage } from '../../extractors/sdk/protocol.js';
import { childEnv } from '../../extractors/sdk/protocol.js';
import { compiledPath } from '../../supervisor/paths.js';

export interface WarehouseRun {
  run_id: string;
  experiment_id?: string;
  run_name?: string;
  lifecycle_stage?: string;
  artifact_uri?: string;
  params?: Record<string, string>;
  tags?: Record<string, string>;
  metrics?: Record<string, number>;
  artifacts?: { path: string; size: number }[];
}

/** Extra tables: name → { columns: 'a VARCHAR, b DOUBLE', rows }. */
export type ExtraTables = Record<string, { columns: string; rows: DuckDBValue[][] }>;

/** A fresh temp dir for one test. */
export function tempDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'dv-derived-'));
}

// Why: every derived-extractor test starts from a warehouse shaped like the MLflow extractors' output.
export async function createWarehouse(file: string, runs: readonly WarehouseRun[], extra: ExtraTables = {}): Promise<void> {
  const instance = await DuckDBInstance.create(file);
  const connection = await instance.connect();
  try {
    await connection.run(`CREATE TABLE experiments (experiment_id VARCHAR, name VARCHAR)`);
    await connection.run(
      `CREATE TABLE runs (run_id VARCHAR, experiment_id VARCHAR, run_name VARCHAR, status VARCHAR, start_time TIMESTAMP, end_time TIMESTAMP, lifecycle_stage VARCHAR, artifact_uri VARCHAR)`,
    );
    await connection.run(`CREATE TABLE params (run_id VARCHAR, key VARCHAR, value VARCHAR)`);
    await connection.run(`CREATE TABLE tags (run_id VARCHAR, key VARCHAR, value VARCHAR)`);
    await connection.run(`CREATE TABLE latest_metrics (run_id VARCHAR, key VARCHAR, value DOUBLE, step BIGINT, timestamp BIGINT)`);
    await connection.run(`CREATE TABLE metric_history (run_id VARCHAR, key VARCHAR, step BIGINT, timestamp BIGINT, value DOUBLE)`);
    await connection.run(`CREATE TABLE artifacts (run_id VARCHAR, path VARCHAR, size BIGINT)`);
    await connection.run(`INSERT INTO experiments VALUES ('1', 'classification')`);
    await connection.run('BEGIN');
    for (const run of runs) {
      await connection.run(`INSERT INTO runs VALUES ($1, $2, $3, 'FINISHED', NULL, NULL, $4, $5)`, [
        run.run_id,
        run.experiment_id ?? '1',
        run.run_name ?? run.run_id,
        run.lifecycle_stage ?? 'active',
        run.artifact_uri ?? null,
      ]);
      for (const [key, value] of Object.entries(run.params ?? {})) await connection.run(`INSERT INTO params VALUES ($1, $2, $3)`, [run.run_id, key, value]);
      for (const [key, value] of Object.entries(run.tags ?? {})) await connection.run(`INSERT INTO tags VALUES ($1, $2, $3)`, [run.run_id, key, value]);
      for (const [key, value] of Object.entries(run.metrics ?? {})) {
        await connection.run(`INSERT INTO latest_metrics VALUES ($1, $2, $3, 0, 0)`, [run.run_id, key, value]);
        await connection.run(`INSERT INTO metric_history VALUES ($1, $2, 0, 0, $3)`, [run.run_id, key, value]);
      }
      for (const artifact of run.artifacts ?? []) await connection.run(`INSERT INTO artifacts VALUES ($1, $2, $3)`, [run.run_id, artifact.path, artifact.size]);
    }
    for (const [name, table] of Object.entries(extra)) {
      await connection.run(`CREATE TABLE ${name} (${table.columns})`);
      const placeholders = table.rows[0]?.map((_, index) => `$${index + 1}`).join(', ');
      for (const row of table.rows) await connection.run(`INSERT INTO ${name} VALUES (${placeholders})`, row);
    }
    await connection.run('COMMIT');
    await connection.run('CHECKPOINT');
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

export interface ExtractorResult {
  code: number | null;
  messages: ChildMessage[];
  stderr: string;
  stdout: string;
  /** The `log` messages at warn level. */
  warnings: string[];
}

// Why: derived extractors are tested as the supervisor runs them — a real child over the IPC channel.
export function runExtractorChild(
  name: string,
  env: { warehouse: string; staging: string; options: Record<string, unknown>; extra?: Record<string, string> },
  register?: (kill: () => void) => void,
  onMessage?: (message: ChildMessage) => void,
): Promise<ExtractorResult> {
  return new Promise((resolve, reject) => {
    const child = fork(compiledPath('extractors/run-extractor.ts'), [name], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        [childEnv.runId]: 'test-run',
        [childEnv.job]: name,
        [childEnv.attempt]: '1',
        [childEnv.protocol]: '1',
        [childEnv.staging]: env.staging,
        [childEnv.warehouse]: env.warehouse,
        [childEnv.options]: JSON.stringify(env.options),
        [childEnv.heartbeatTimeout]: '30000',
        ...env.extra,
      },
      serialization: 'json',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    register?.(() => child.kill('SIGKILL'));
    const messages: ChildMessage[] = [];
    let stderr = '';
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('message', (message) => {
      messages.push(message as ChildMessage);
      onMessage?.(message as ChildMessage);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const warnings = messages.flatMap((message) => (message.type === 'log' && message.level === 'warn' ? [message.msg] : []));
      resolve({ code, messages, stderr, stdout, warnings });
    });
  });
}

// Why: assertions read what the extractor staged, with plain JS values.
export async function queryFile(file: string, sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.create(file, { access_mode: 'READ_ONLY' });
  const connection = await instance.connect();
  try {
    const reader = await connection.runAndReadAll(sql);
    const names = reader.columnNames();
    return reader.getRowsJS().map((row) => Object.fromEntries(names.map((column, index) => [column, row[index]])));
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}
