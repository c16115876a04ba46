// The file-store reader's fast paths must give exactly what the slow ones give: the flat meta.yaml
// parser (file-store.ts parseFlatMeta) against the full failsafe YAML parser (meta-yaml.ts) on every
// meta.yaml of the committed stores and on crafted edge cases, and whole-file metric reads against
// the streamed reader on a metric file larger than the whole-file limit.
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { FileStoreReader, latestInMetricText, parseFlatMeta } from '../extractors/mlflow/file-store.js';
import { isLaterMetric, type MetricPoint } from '../extractors/mlflow/types.js';
import { readMetaYaml } from '../extractors/mlflow/meta-yaml.js';
import { projectRoot } from '../supervisor/paths.js';
import { tempDir } from './sdk-harness.js';

function metaFiles(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) metaFiles(full, out);
    else if (entry.name === 'meta.yaml') out.push(full);
  }
  return out;
}

test('flat meta.yaml parser equals the YAML parser on every meta.yaml of the committed stores', async (t) => {
  const files = [...metaFiles(path.join(projectRoot, 'test/fixtures/mlflow')), ...metaFiles(path.join(projectRoot, 'config/sample'))];
  t.true(files.length > 50, `found ${files.length} meta.yaml files`);
  let fast = 0;
  for (const file of files) {
    const flat = parseFlatMeta(readFileSync(file, 'utf8'));
    if (flat === undefined) continue;
    fast++;
    t.deepEqual(flat, await readMetaYaml(file, undefined), file);
  }
  t.true(fast > files.length / 2, `the fast path took ${fast} of ${files.length} files`);
});

test('flat meta.yaml parser: crafted cases equal the YAML parser, or are left to it', async (t) => {
  const dir = tempDir(t);
  const cases: [string, 'fast' | 'fallback'][] = [
    ["experiment_id: '253031330985650090'\nname: 1e3\nuser_id: ~\nend_time: null\nrun_name: it's ok\ntags: []\n", 'fast'],
    ["run_name: 'quoted ''inner'' text'\nsource_name: ''\nstatus: 3\nempty_map: {}\n", 'fast'],
    ['run_name:    spaced value   \nneg: -5\nuni: ünïcødé ✓\nhash: a#b\n', 'fast'],
    ['run_name: a: b\n', 'fallback'],
    ['run_name: value # comment\n', 'fallback'],
    ['run_name: "double quoted"\n', 'fallback'],
    ['tags:\n  a: b\n', 'fallback'],
    ['tags:\n- a\n', 'fallback'],
    ['run_name: multi\n  line\n', 'fallback'],
    ['---\nname: doc\n', 'fallback'],
    ['name: x\r\nother: y\r\n', 'fallback'],
    ["run_name: 'open quote\n", 'fallback'],
    ['run_name: *alias\n', 'fallback'],
    ['run_name: - item\n', 'fallback'],
    ['name: first\nname: second\n', 'fast'],
  ];
  for (const [index, [text, expected]] of cases.entries()) {
    const flat = parseFlatMeta(text);
    t.is(flat === undefined ? 'fallback' : 'fast', expected, JSON.stringify(text));
    if (flat === undefined) continue;
    const file = path.join(dir, `case-${index}.yaml`);
    writeFileSync(file, text);
    t.deepEqual(flat, await readMetaYaml(file, undefined), JSON.stringify(text));
  }
});

test('a metric file above the whole-file limit is streamed and yields the same points and latest value', async (t) => {
  const root = path.join(tempDir(t), 'mlruns');
  const runId = 'a'.repeat(32);
  const runDir = path.join(root, '7', runId);
  mkdirSync(path.join(runDir, 'metrics'), { recursive: true });
  mkdirSync(path.join(runDir, 'params'), { recursive: true });
  writeFileSync(path.join(root, '7', 'meta.yaml'), `artifact_location: file://${root}/7\nexperiment_id: '7'\nlifecycle_stage: active\nname: big\n`);
  writeFileSync(path.join(runDir, 'meta.yaml'), `experiment_id: '7'\nlifecycle_stage: active\nrun_id: ${runId}\nstatus: 3\nstart_time: 1\n`);
  const lines: string[] = [];
  for (let step = 0; step < 200_000; step++) lines.push(`${1_700_000_000_000 + step} ${step % 97 === 0 ? 'nan' : (step / 7).toString()} ${step}`);
  writeFileSync(path.join(runDir, 'metrics', 'loss'), `${lines.join('\n')}\n`);
  writeFileSync(path.join(runDir, 'metrics', 'small'), '1700000000000 0.5 0\n1700000000001 0.25 1\n');
  t.true(statSync(path.join(runDir, 'metrics', 'loss')).size > 4 * 1024 * 1024, 'the big file is above the 4 MiB whole-file limit');
  const reader = await FileStoreReader.open(root);
  const listings = [];
  for await (const listing of reader.runs(['7'], { includeDeleted: false })) listings.push(listing);
  const run = listings[0]!.ok ? listings[0]!.run : undefined;
  if (run === undefined) return t.fail('run not listed');
  let count = 0;
  let last: number | undefined;
  for await (const batch of reader.metricHistory(run, 'loss')) {
    t.true(batch.length <= 10_000);
    count += batch.length;
    last = batch[batch.length - 1]!.step;
  }
  t.is(count, 200_000);
  t.is(last, 199_999);
  let small = 0;
  for await (const batch of reader.metricHistory(run, 'small')) small += batch.length;
  t.is(small, 2);
  const data = await reader.runData(run);
  t.deepEqual(data.latestMetrics.map((m) => [m.key, m.step, m.value]), [['loss', 199_999, 199_999 / 7], ['small', 1, 0.25]]);
  t.deepEqual(await reader.metricKeys(run), ['loss', 'small']);
  await reader.close();
});

test('the latest-point scan equals the latest of every parsed point, on every metric file of the fixture store and on odd lines', async (t) => {
  const root = path.join(projectRoot, 'test/fixtures/mlflow/filestore/mlruns');
  const reader = await FileStoreReader.open(root);
  let files = 0;
  for await (const experiment of reader.experiments({ includeDeleted: false })) {
    for await (const listing of reader.runs([experiment.experimentId], { includeDeleted: false })) {
      if (!listing.ok) continue;
      for (const key of await reader.metricKeys(listing.run)) {
        let latest: MetricPoint | undefined;
        for await (const batch of reader.metricHistory(listing.run, key)) for (const point of batch) if (latest === undefined || isLaterMetric(point, latest)) latest = point;
        const dir = path.join(root, listing.run.experimentId, listing.run.runId, 'metrics', ...key.split('/'));
        t.deepEqual(latestInMetricText(readFileSync(dir, 'utf8'), dir, key, listing.run.runId), latest, `${listing.run.runId} ${key}`);
        files++;
      }
    }
  }
  t.true(files > 20, `${files} metric files compared`);
  const odd = '1 nan 5\n2 -inf 5\n3 0.5 5\n1 7 2\n';
  t.deepEqual(latestInMetricText(odd, 'f', 'k', 'r'), { key: 'k', value: 0.5, timestamp: 3, step: 5 });
  t.deepEqual(latestInMetricText('1 nan 5\n1 -1 5\n', 'f', 'k', 'r')?.value, NaN, 'NaN compares as 0, above -1');
  t.deepEqual(latestInMetricText('10 1.5\n11 2.5\n', 'f', 'k', 'r'), { key: 'k', value: 2.5, timestamp: 11, step: 0 }, 'pre-1.0 two-field lines');
  t.deepEqual(latestInMetricText('10 1.5 3 ds abc\r\n', 'f', 'k', 'r'), { key: 'k', value: 1.5, timestamp: 10, step: 3 }, 'MLflow 3 five-field lines, CRLF');
  t.throws(() => latestInMetricText('10 1.5 3\n11 oops 4\n', 'f', 'k', 'r'), { message: /f: line 2: value "oops" is not a number/ });
  await reader.close();
});
