// The file-store and SQLite readers against the fixture stores the real MLflow client wrote: every
// count equals what MLflow reported (expected.json), and the edge cases come back right.
import { existsSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { openSource } from '../extractors/mlflow/source.js';
import type { MlflowReader, RunInfo } from '../extractors/mlflow/types.js';
import { copyFixture, dumpReader, expectedFor, sourceFor, type FixtureForm } from './helpers/mlflow-fixtures.js';

const forms: FixtureForm[] = ['filestore', 'sqlite'];

async function withReader<T>(form: FixtureForm, use: (reader: MlflowReader) => Promise<T>): Promise<T> {
  const reader = await openSource(sourceFor(form));
  try {
    return await use(reader);
  } finally {
    await reader.close();
  }
}

async function findRun(reader: MlflowReader, runId: string, includeDeleted = false): Promise<RunInfo> {
  const ids: string[] = [];
  for await (const e of reader.experiments({ includeDeleted })) ids.push(e.experimentId);
  for await (const listing of reader.runs(ids, { includeDeleted })) if (listing.ok && listing.run.runId === runId) return listing.run;
  throw new Error(`run ${runId} not found`);
}

for (const form of forms) {
  for (const includeDeleted of [false, true]) {
    test(`${form}: counts equal what MLflow reports (include_deleted ${includeDeleted})`, async (t) => {
      const expected = expectedFor(form);
      const totals = includeDeleted ? expected.totals.all : expected.totals.active;
      const dump = await withReader(form, (reader) => dumpReader(reader, includeDeleted));
      t.deepEqual(dump.bad, []);
      t.is(dump.experiments.length, includeDeleted ? expected.experiments.all : expected.experiments.active);
      t.is(dump.runs.length, totals.runs);
      t.is(dump.params.length, totals.params);
      t.is(dump.tags.length, totals.tags);
      t.is(dump.latest.length, totals.latest_metrics);
      t.is(dump.history.length, totals.metric_points);
      t.is(dump.artifacts.length, totals.artifacts);
      t.is(dump.artifacts.reduce((sum, row) => sum + (JSON.parse(row) as [string, string, number])[2], 0), totals.artifact_bytes);
    });
  }

  test(`${form}: per-run metric points and experiments match MLflow`, async (t) => {
    const expected = expectedFor(form);
    const dump = await withReader(form, (reader) => dumpReader(reader, true));
    const points = new Map<string, number>();
    for (const row of dump.history) {
      const runId = (JSON.parse(row) as string[])[0]!;
      points.set(runId, (points.get(runId) ?? 0) + 1);
    }
    for (const [runId, detail] of Object.entries(expected.runs)) t.is(points.get(runId) ?? 0, detail.metric_points, `run ${runId}`);
    const ids = dump.experiments.map((row) => (JSON.parse(row) as string[])[0]).sort();
    t.deepEqual(ids, expected.experiment_list.map((e) => e.experiment_id).sort());
  });

  test(`${form}: spot values (18-digit ids, NaN/±Infinity, keys with '/', unicode, empty and multi-line params, datasets)`, async (t) => {
    const expected = expectedFor(form);
    await withReader(form, async (reader) => {
      const experiments = [];
      for await (const e of reader.experiments({ includeDeleted: false })) experiments.push(e);
      const classification = experiments.find((e) => e.name === 'classification');
      t.is(classification?.experimentId, '253031330985650090');
      t.is(experiments.find((e) => e.name === 'imputation')?.experimentId, '940304421003085572');
      t.is(classification?.tags.find((tag) => tag.key === 'mlflow.note.content')?.value, 'outlier × imputation × classifier × featurization');

      const run = await findRun(reader, expected.spot.run_id);
      t.is(run.experimentId, '253031330985650090');
      t.is(run.runName, expected.spot.run_name);
      t.is(run.status, 'FINISHED');
      const data = await reader.runData(run);
      const params = Object.fromEntries(data.params.map((p) => [p.key, p.value]));
      t.deepEqual(params, expected.spot.params);
      t.is(params['notes'], '');
      t.is(params['model/C'], expected.spot.params['model/C']);
      t.is(params['description'], 'first line\nsecond line: ünïcode');
      const tags = Object.fromEntries(data.tags.map((tg) => [tg.key, tg.value]));
      t.is(tags['team/owner'], 'Zoë — 実験 🧪 naïve');
      const metrics = Object.fromEntries(data.latestMetrics.map((m) => [m.key, m.value]));
      t.true(Number.isNaN(metrics['weird/nan']));
      t.is(metrics['weird/pos_inf'], Infinity);
      t.is(metrics['weird/neg_inf'], -Infinity);
      t.is(metrics['AUROC'], expected.spot.metrics['AUROC'] as number);
      t.is(metrics['val/AUROC'], expected.spot.metrics['val/AUROC'] as number);
      // MLflow's SQL store hands back ±DBL_MAX for ±inf; the reader decodes it back.
      if (form === 'sqlite') t.is(expected.spot.metrics['weird/pos_inf'], 1.7976931348623157e308);
      const history = [];
      for await (const batch of reader.metricHistory(run, 'warmup')) history.push(...batch);
      t.deepEqual(
        history.map((m) => ({ step: m.step, timestamp: m.timestamp, value: m.value })).sort((a, b) => a.step - b.step),
        expected.spot.warmup_history.map((m) => ({ ...m, value: Number(m.value) })).sort((a, b) => a.step - b.step),
      );
      t.deepEqual(data.inputs.map((d) => ({ name: d.name, digest: d.digest, context: [d.context] })), expected.spot.datasets);
      const runs = [];
      for await (const listing of reader.runs([run.experimentId], { includeDeleted: false })) if (listing.ok) runs.push(listing.run);
      t.true(runs.some((r) => r.runName === '1e3'), 'a run named 1e3 keeps its name (YAML 1.1 pitfall)');
      t.true(runs.some((r) => r.status === 'FAILED'));
    });
  });

  test(`${form}: deleted runs and experiments only with include_deleted`, async (t) => {
    await withReader(form, async (reader) => {
      const names = async (includeDeleted: boolean): Promise<string[]> => {
        const ids: string[] = [];
        for await (const e of reader.experiments({ includeDeleted })) ids.push(e.experimentId);
        const out: string[] = [];
        for await (const listing of reader.runs(ids, { includeDeleted })) if (listing.ok) out.push(`${listing.run.runName}:${listing.run.lifecycleStage}`);
        return out;
      };
      const active = await names(false);
      const all = await names(true);
      t.false(active.some((n) => n.startsWith('discarded') || n.startsWith('pilot-')));
      t.true(all.includes('discarded:deleted'));
      t.true(all.filter((n) => n.startsWith('pilot-')).length === 2);
    });
  });

  test(`${form}: run filters (params, tags, attributes, metrics)`, async (t) => {
    await withReader(form, async (reader) => {
      const count = async (filter: string): Promise<number> => {
        let n = 0;
        for await (const listing of reader.runs(['253031330985650090', '940304421003085572'], { includeDeleted: false, filter })) if (listing.ok) n++;
        return n;
      };
      t.is(await count("params.classifier = 'LogReg'"), 8);
      t.is(await count("params.classifier = 'LogReg' AND params.outlier_method = 'LOF'"), 4);
      t.is(await count("attributes.status = 'FAILED'"), 1);
      t.is(await count("tags.`team/owner` LIKE 'Zoë%'"), 16);
      t.is(await count('metrics.AUROC > 2'), 0);
      t.is(await count("params.imputation_method IN ('MOMENT')"), 10);
      await t.throwsAsync(() => count("params.a = 'x' OR params.b = 'y'"), { message: /no OR/ });
      await t.throwsAsync(() => count("datasets.name = 'x'"), { message: /unsupported prefix 'datasets'/ });
    });
  });
}

test('filestore: a filter reads only the parts of a run it looks at: a broken metric file does not spoil a filter on params', async (t) => {
  const { dir, cleanup } = copyFixture('filestore');
  t.teardown(cleanup);
  const mlruns = path.join(dir, 'mlruns');
  const experiment = '253031330985650090';
  // A LogReg run whose metric file is replaced by a symlink to nowhere (unreadable).
  const runIds = readdirSync(path.join(mlruns, experiment)).filter((name) => existsSync(path.join(mlruns, experiment, name, 'params', 'classifier')));
  const broken = runIds.find((id) => readFileSync(path.join(mlruns, experiment, id, 'params', 'classifier'), 'utf8') === 'LogReg');
  if (broken === undefined) return t.fail('no LogReg run in the fixture');
  const metrics = path.join(mlruns, experiment, broken, 'metrics');
  const metric = readdirSync(metrics, { withFileTypes: true }).find((entry) => entry.isFile())!.name;
  rmSync(path.join(metrics, metric));
  symlinkSync(path.join(dir, 'nowhere'), path.join(metrics, metric));
  const reader = await openSource(sourceFor('filestore', dir));
  t.teardown(() => reader.close());
  const listed = new Map<string, RunInfo>();
  const list = async (filter: string): Promise<{ ok: string[]; bad: string[] }> => {
    const out = { ok: [] as string[], bad: [] as string[] };
    for await (const listing of reader.runs([experiment], { includeDeleted: false, filter })) {
      if (listing.ok) {
        out.ok.push(listing.run.runId);
        listed.set(listing.run.runId, listing.run);
      } else out.bad.push(listing.runId);
    }
    return out;
  };
  const byParams = await list("params.classifier = 'LogReg'");
  t.is(byParams.ok.length, 8, 'every LogReg run is listed, the one with the broken metric file too');
  t.true(byParams.ok.includes(broken));
  t.deepEqual(byParams.bad, []);
  const byMetrics = await list('metrics.AUROC > -1');
  t.deepEqual(byMetrics.bad, [broken], 'a filter on metrics still reads them, and names the run it cannot read');
  // The extractor that reads the run's data later still gets the error, naming the file.
  await t.throwsAsync(() => reader.runData(listed.get(broken)!), { message: new RegExp(metric) });
});

test("sqlite: countRuns equals the listing's length (with and without deleted runs), and declines a filter", async (t) => {
  await withReader('sqlite', async (reader) => {
    t.is(typeof reader.countRuns, 'function');
    for (const includeDeleted of [false, true]) {
      const ids: string[] = [];
      for await (const e of reader.experiments({ includeDeleted })) ids.push(e.experimentId);
      const totals = includeDeleted ? expectedFor('sqlite').totals.all : expectedFor('sqlite').totals.active;
      t.is(await countListed(reader, ids, includeDeleted), totals.runs);
      t.is(await reader.countRuns!(ids, { includeDeleted }), totals.runs, `include_deleted ${includeDeleted}`);
      t.is(await reader.countRuns!(ids.slice(1), { includeDeleted }), await countListed(reader, ids.slice(1), includeDeleted), 'some experiments');
    }
    t.is(await reader.countRuns!(['0'], { includeDeleted: false, filter: "params.classifier = 'LogReg'" }), undefined);
  });
});

async function countListed(reader: MlflowReader, ids: string[], includeDeleted: boolean): Promise<number> {
  let listed = 0;
  for await (const _listing of reader.runs(ids, { includeDeleted })) listed++;
  return listed;
}
