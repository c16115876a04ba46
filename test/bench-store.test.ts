// The benchmark stores come from a fast direct writer (bench/make-store.py --writer fast). This proves
// the real MLflow client reads its output exactly as it reads a store the client itself wrote from the
// same spec: experiments, runs, params, tags, latest metrics, every metric history, artifact listings
// and artifact bytes — for the file store and for SQLite.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { projectRoot } from '../supervisor/paths.js';
import { tempDir } from './helpers/job.js';

const python = path.join(projectRoot, '.venv', 'bin', 'python');
const makeStore = path.join(projectRoot, 'bench', 'make-store.py');
const readStore = path.join(projectRoot, 'test', 'fixtures', 'mlflow', 'read_store.py');

function mlflowMissing(): string | undefined {
  if (!existsSync(python)) return `${python} does not exist (create the venv: python3 -m venv .venv && .venv/bin/pip install -r test/fixtures/mlflow/requirements.txt)`;
  const probe = spawnSync(python, ['-c', 'import mlflow, numpy, pyarrow'], { encoding: 'utf8' });
  return probe.status === 0 ? undefined : `${python} cannot import mlflow/numpy/pyarrow: ${probe.stderr.trim().split('\n').pop() ?? ''}`;
}

interface StoreDump {
  experiments: { experiment_id: string; name: string }[];
  runs: Record<string, { run_name: string; history: Record<string, unknown[]>; artifacts: { path: string; dir: boolean }[] }>;
}

async function dump(uri: string, root: string): Promise<StoreDump> {
  const { stdout } = await execa(python, [readStore, uri, root], { env: { MLFLOW_ALLOW_FILE_STORE: 'true' } });
  return JSON.parse(stdout) as StoreDump;
}

const missing = mlflowMissing();
if (missing !== undefined) {
  console.log(`bench-store: skipped: ${missing}`);
  test.skip('the fast writer’s stores read back like the real client’s (needs mlflow in .venv)', () => {});
} else {
  test('the fast writer’s file store and SQLite store read back through the MLflow client exactly like the client’s own', async (t) => {
    t.timeout(300_000); // two stores written by the real client plus four read-backs, on a shared 2-core machine
    const { dir, cleanup } = tempDir();
    t.teardown(cleanup);
    const client = path.join(dir, 'client');
    const fast = path.join(dir, 'fast');
    const spec = ['--profile', 'tiny', '--scale', '2', '--seed', '7'];
    // Independent processes, one after the other: the machine's two cores are shared.
    await execa(python, [makeStore, '--out', client, '--writer', 'client', ...spec]);
    await execa(python, [makeStore, '--out', fast, '--writer', 'fast', ...spec]);

    const pairs = [
      { form: 'file store', reference: await dump(`file://${client}/filestore/mlruns`, `${client}/filestore`), candidate: await dump(`file://${fast}/mlruns`, fast) },
      { form: 'SQLite', reference: await dump(`sqlite:///${client}/sqlite/mlflow.db`, `${client}/sqlite`), candidate: await dump(`sqlite:///${fast}/mlflow.db`, fast) },
    ];
    for (const { form, reference, candidate } of pairs) {
      // Not vacuous: the tiny profile at scale 2 has 50 runs, histories and per-subject artifacts.
      const runs = Object.values(reference.runs);
      t.is(runs.length, 50, `${form}: runs written by the client`);
      t.is(reference.experiments.length, 3, `${form}: Default + classification + imputation`);
      t.true(runs.every((run) => Object.keys(run.history).length >= 3), `${form}: every run has metric histories`);
      t.is(runs.flatMap((run) => run.artifacts).filter((a) => !a.dir && a.path.startsWith('signals/csv/')).length, 19 * 2 * 4, `${form}: 4 signal files per imputation run`);
      t.deepEqual(Object.keys(candidate.runs).sort(), Object.keys(reference.runs).sort(), `${form}: the same run ids`);
      t.deepEqual(candidate.experiments, reference.experiments, `${form}: experiments`);
      for (const [runId, run] of Object.entries(reference.runs)) {
        t.deepEqual(candidate.runs[runId], run, `${form}: run ${runId} (${run.run_name})`);
      }
    }
  });
}
