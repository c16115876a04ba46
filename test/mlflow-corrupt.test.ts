// Damaged stores: each kind of bad data gives an error naming the run and the file, the run is
// skipped (listed as bad), and every other run is still read. Copies of the fixtures are damaged.
import { closeSync, mkdirSync, openSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, statSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { openSource } from '../extractors/mlflow/source.js';
import { copyFixture, dumpReader, expectedFor, sourceFor } from './helpers/mlflow-fixtures.js';

const CLASSIFICATION = '253031330985650090';

function firstRunDir(root: string): { runId: string; dir: string } {
  const expDir = path.join(root, 'mlruns', CLASSIFICATION);
  // An active run (the deleted one would not be listed without include_deleted).
  const runId = expectedFor('filestore').spot.run_id;
  return { runId, dir: path.join(expDir, runId) };
}

interface Damage {
  name: string;
  damage: (runDir: string) => string;
  message: RegExp;
}

const damages: Damage[] = [
  {
    name: 'truncated metric line',
    damage: (dir) => {
      const file = path.join(dir, 'metrics', 'AUROC');
      writeFileSync(file, '1735689661000 0.7 0\n17356896');
      return file;
    },
    message: /line 2: expected "<timestamp> <value> <step>", found 1 field/,
  },
  {
    name: 'non-numeric metric value',
    damage: (dir) => {
      const file = path.join(dir, 'metrics', 'train', 'loss');
      writeFileSync(file, '1735689661000 0.7 0\n1735689661001 abc 1\n');
      return file;
    },
    message: /line 2: value "abc" is not a number/,
  },
  {
    name: 'missing meta.yaml (run dir without meta)',
    damage: (dir) => {
      const file = path.join(dir, 'meta.yaml');
      unlinkSync(file);
      return file;
    },
    message: /meta\.yaml is missing/,
  },
  {
    name: 'garbled meta.yaml',
    damage: (dir) => {
      const file = path.join(dir, 'meta.yaml');
      writeFileSync(file, 'artifact_uri: [unclosed\nrun_id: {\n  - nope');
      return file;
    },
    message: /garbled meta\.yaml/,
  },
  {
    name: 'unreadable file (a broken symlink)',
    damage: (dir) => {
      const file = path.join(dir, 'params', 'classifier');
      unlinkSync(file);
      symlinkSync('/nonexistent/duckvisor-test', file);
      return file;
    },
    message: /unreadable file \(ENOENT/,
  },
  {
    name: 'unreadable meta.yaml (a directory)',
    damage: (dir) => {
      const file = path.join(dir, 'meta.yaml');
      unlinkSync(file);
      mkdirSync(file);
      return file;
    },
    message: /cannot read meta\.yaml \(EISDIR\)/,
  },
];

for (const damage of damages) {
  test(`file store, ${damage.name}: the run is reported with its file and skipped, the rest is read`, async (t) => {
    const copy = copyFixture('filestore');
    t.teardown(copy.cleanup);
    const { runId, dir } = firstRunDir(copy.dir);
    const file = damage.damage(dir);
    const reader = await openSource(sourceFor('filestore', copy.dir));
    t.teardown(() => reader.close());
    // A run whose listing is fine but whose data is bad surfaces when its data is read.
    const errors: string[] = [];
    const ids = ['0', CLASSIFICATION, '940304421003085572'];
    let good = 0;
    for await (const listing of reader.runs(ids, { includeDeleted: false })) {
      if (!listing.ok) {
        errors.push(listing.error.message);
        t.is(listing.runId, runId);
        continue;
      }
      try {
        await reader.runData(listing.run);
        for (const key of await reader.metricKeys(listing.run)) for await (const _ of reader.metricHistory(listing.run, key)) void _;
        good++;
      } catch (error) {
        errors.push((error as Error).message);
        t.is((error as { runId?: string }).runId, listing.run.runId);
      }
    }
    t.is(errors.length, 1, errors.join('\n'));
    t.true(errors[0]!.includes(`run ${runId}`), errors[0]);
    t.true(errors[0]!.includes(file), errors[0]);
    t.regex(errors[0]!, damage.message);
    t.is(good, expectedFor('filestore').totals.active.runs - 1);
  });
}

test('file store: a stray folder without meta.yaml that is not a run id is ignored with a warning', async (t) => {
  const copy = copyFixture('filestore');
  t.teardown(copy.cleanup);
  mkdirSync(path.join(copy.dir, 'mlruns', CLASSIFICATION, 'notes'));
  const warnings: string[] = [];
  const reader = await openSource(sourceFor('filestore', copy.dir), { onWarning: (m) => warnings.push(m) });
  t.teardown(() => reader.close());
  const dump = await dumpReader(reader, false);
  t.deepEqual(dump.bad, []);
  t.is(dump.runs.length, expectedFor('filestore').totals.active.runs);
  t.true(warnings.some((w) => w.includes('notes')));
});

test('SQLite: a truncated mlflow.db is a clear error naming the file', async (t) => {
  const copy = copyFixture('sqlite');
  t.teardown(copy.cleanup);
  const db = path.join(copy.dir, 'mlflow.db');
  truncateSync(db, Math.floor(statSync(db).size / 3));
  const error = await t.throwsAsync(async () => {
    const reader = await openSource(sourceFor('sqlite', copy.dir));
    try {
      await dumpReader(reader, true);
    } finally {
      await reader.close();
    }
  });
  t.true(error!.message.includes(db), error!.message);
  t.regex(error!.message, /damaged or truncated/);
});

test('SQLite: a truncated mlflow.db whose run data pages are gone skips only those runs', async (t) => {
  // Damage only the pages of the metrics table: the runs list still reads, runs touching those pages fail one by one.
  const copy = copyFixture('sqlite');
  t.teardown(copy.cleanup);
  const db = path.join(copy.dir, 'mlflow.db');
  const setup = new Database(db);
  const pageSize = Number(setup.pragma('page_size', { simple: true }));
  const rootPage = Number((setup.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'latest_metrics'").get() as { rootpage: number }).rootpage);
  setup.close();
  const bytes = readFileSync(db);
  bytes.fill(0xff, (rootPage - 1) * pageSize, rootPage * pageSize);
  writeFileSync(db, bytes);
  const reader = await openSource(sourceFor('sqlite', copy.dir));
  t.teardown(() => reader.close());
  let failed = 0;
  let listed = 0;
  for await (const listing of reader.runs([CLASSIFICATION], { includeDeleted: false })) {
    if (!listing.ok) continue;
    listed++;
    try {
      await reader.runData(listing.run);
    } catch (error) {
      failed++;
      t.true((error as Error).message.includes(`run ${listing.run.runId}`));
      t.true((error as Error).message.includes(db));
    }
  }
  t.is(listed, 16);
  t.true(failed > 0, 'the damaged page makes runs fail');
});

test('SQLite: a locked mlflow.db (BEGIN EXCLUSIVE elsewhere) is a clear error naming the file', async (t) => {
  const copy = copyFixture('sqlite');
  t.teardown(copy.cleanup);
  const db = path.join(copy.dir, 'mlflow.db');
  const writer = new Database(db);
  writer.pragma('journal_mode = DELETE');
  writer.exec('BEGIN EXCLUSIVE');
  writer.exec("UPDATE runs SET name = name WHERE 0");
  t.teardown(() => {
    try {
      writer.exec('ROLLBACK');
    } catch {
      // already closed
    }
    writer.close();
  });
  const error = await t.throwsAsync(async () => {
    const reader = await openSource(sourceFor('sqlite', copy.dir));
    try {
      await dumpReader(reader, false);
    } finally {
      await reader.close();
    }
  });
  t.true(error!.message.includes(db), error!.message);
  t.regex(error!.message, /locked by another process/);
});

test('SQLite: an empty or non-MLflow file is refused with what to do', async (t) => {
  const copy = copyFixture('sqlite');
  t.teardown(copy.cleanup);
  const empty = path.join(copy.dir, 'empty.db');
  closeSync(openSync(empty, 'w'));
  await t.throwsAsync(() => openSource(`sqlite:///${empty}`), { message: /empty\.db.*(empty|damaged)/ });
  const other = path.join(copy.dir, 'other.db');
  new Database(other).exec('CREATE TABLE x (a)');
  await t.throwsAsync(() => openSource(`sqlite:///${other}`), { message: /not an MLflow tracking store/ });
  rmSync(other);
  await t.throwsAsync(() => openSource(`sqlite:///${other}`), { message: /does not exist/ });
});
