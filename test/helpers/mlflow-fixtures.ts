// Test helpers for the MLflow readers: the committed fixture stores, their expected.json (what the
// real MLflow client reported when it wrote them), temp copies to damage, and a reader's whole output
// as sorted rows so two readers can be compared row for row.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../supervisor/paths.js';
import type { MlflowReader } from '../../extractors/mlflow/types.js';

export const mlflowFixtures = path.join(projectRoot, 'test', 'fixtures', 'mlflow');
export type FixtureForm = 'filestore' | 'sqlite';

export interface Totals {
  runs: number;
  params: number;
  tags: number;
  latest_metrics: number;
  metric_points: number;
  artifacts: number;
  artifact_bytes: number;
  artifact_rows: Record<string, number>;
}

export interface Expected {
  experiments: { all: number; active: number };
  experiment_list: { experiment_id: string; name: string; lifecycle_stage: string; runs_all: number; runs_active: number }[];
  totals: { active: Totals; all: Totals };
  runs: Record<string, { lifecycle_stage: string; metric_points: number; params: number; tags: number }>;
  spot: {
    run_id: string;
    run_name: string;
    params: Record<string, string>;
    tags: Record<string, string>;
    metrics: Record<string, number | string>;
    warmup_history: { step: number; timestamp: number; value: number | string }[];
    datasets: { name: string; digest: string; context: string[] }[];
  };
}

export function expectedFor(form: FixtureForm): Expected {
  return JSON.parse(readFileSync(path.join(mlflowFixtures, form, 'expected.json'), 'utf8')) as Expected;
}

/** The source string for a fixture form living in `dir` (default: the committed copy). */
export function sourceFor(form: FixtureForm, dir = path.join(mlflowFixtures, form)): string {
  return form === 'filestore' ? path.join(dir, 'mlruns') : `sqlite:///${path.join(dir, 'mlflow.db')}`;
}

/** A private copy of a fixture store (to damage), removed by the returned cleanup. */
export function copyFixture(form: FixtureForm): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-mlflow-'));
  cpSync(path.join(mlflowFixtures, form), dir, { recursive: true });
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function number(value: number): number | string {
  return Number.isFinite(value) ? value : String(value);
}

export interface Dump {
  experiments: string[];
  runs: string[];
  params: string[];
  tags: string[];
  latest: string[];
  history: string[];
  artifacts: string[];
  bad: string[];
}

/** Everything a reader yields, as sorted JSON rows (NaN/Infinity spelled out). */
export async function dumpReader(reader: MlflowReader, includeDeleted: boolean): Promise<Dump> {
  const dump: Dump = { experiments: [], runs: [], params: [], tags: [], latest: [], history: [], artifacts: [], bad: [] };
  const ids: string[] = [];
  for await (const e of reader.experiments({ includeDeleted })) {
    ids.push(e.experimentId);
    dump.experiments.push(JSON.stringify([e.experimentId, e.name, e.lifecycleStage, e.creationTime, e.lastUpdateTime, e.tags.map((t) => [t.key, t.value]).sort()]));
  }
  for await (const listing of reader.runs(ids, { includeDeleted })) {
    if (!listing.ok) {
      dump.bad.push(`${listing.runId}: ${listing.error.message}`);
      continue;
    }
    const run = listing.run;
    dump.runs.push(JSON.stringify([run.runId, run.experimentId, run.runName, run.userId, run.status, run.startTime, run.endTime, run.lifecycleStage]));
    const data = await reader.runData(run);
    for (const p of data.params) dump.params.push(JSON.stringify([run.runId, p.key, p.value]));
    for (const t of data.tags) dump.tags.push(JSON.stringify([run.runId, t.key, t.value]));
    for (const m of data.latestMetrics) dump.latest.push(JSON.stringify([run.runId, m.key, number(m.value), m.step, m.timestamp]));
    for (const key of await reader.metricKeys(run)) {
      for await (const batch of reader.metricHistory(run, key)) {
        for (const m of batch) dump.history.push(JSON.stringify([run.runId, key, m.step, m.timestamp, number(m.value)]));
      }
    }
    for await (const a of reader.artifacts(run)) dump.artifacts.push(JSON.stringify([run.runId, a.path, a.size]));
  }
  for (const list of Object.values(dump)) list.sort();
  return dump;
}
