// Batched artifact reads (ArtifactTableReader.readMany) must give exactly what reading each file on its
// own gives (ArtifactTableReader.rows): same values, same coercions, same order, even when the files of
// one batch drift in columns, types, dialect or date format; a bad file in a batch is named by its
// position after every earlier file's rows, with no row delivered twice. The mlflow-artifacts extractor
// then names the run and the artifact of a file that fails mid-read, and skips only that run.
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { DuckDBInstance } from '@duckdb/node-api';
import { execa } from 'execa';
import { ArtifactFileError, ArtifactTableReader, type FileRows, type TableFormat } from '../extractors/mlflow/artifact-tables.js';
import type { CellValue, Columns } from '../extractors/sdk/api.js';
import { childEnv } from '../extractors/sdk/protocol.js';
import { compiledPath } from '../supervisor/paths.js';
import { copyFixture, sourceFor } from './helpers/mlflow-fixtures.js';
import { tempDir } from './helpers/job.js';

type Tagged = [number, ...CellValue[]];

/** Every file read on its own, rows tagged with the file's position. */
async function oneByOne(reader: ArtifactTableReader, files: string[], format: TableFormat, columns: Columns): Promise<Tagged[]> {
  const out: Tagged[] = [];
  for (const [index, file] of files.entries()) {
    for await (const batch of reader.rows(file, format, columns)) for (const row of batch) out.push([index, ...row]);
  }
  return out;
}

/** The batched read, rows tagged the same way; a thrown error is returned with the rows delivered before it. */
async function batched(reader: ArtifactTableReader, files: string[], format: TableFormat, columns: Columns): Promise<{ rows: Tagged[]; error?: unknown }> {
  const rows: Tagged[] = [];
  try {
    for await (const { index, rows: part } of reader.readMany(files, format, columns) as AsyncGenerator<FileRows>) for (const row of part) rows.push([index, ...row]);
  } catch (error) {
    return { rows, error };
  }
  return { rows };
}

async function withReader(t: { teardown: (fn: () => void) => void }): Promise<ArtifactTableReader> {
  const reader = await ArtifactTableReader.open();
  t.teardown(() => reader.close());
  return reader;
}

const csvLines = (...lines: string[]): string => `${lines.join('\n')}\n`;

test('CSV: a batch with drifting types, column order, dialect, dates and empty files reads exactly as file by file', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reader = await withReader(t);
  const files: string[] = [];
  const add = (name: string, text: string): void => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    files.push(file);
  };
  add('a.csv', csvLines('t,x,y,d', '0,1.50,a,2024-01-02', '1,2.25,b,2024-01-03'));
  add('b.csv', csvLines('t,x,y,d', '0,1.50,c,2024-02-02', '1,-0.5,d,2024-02-03'));
  add('c.csv', csvLines('t,x,y,d', '0,2,e,2024-03-02', '1,3,f,2024-03-03')); // x sniffs as BIGINT here
  add('d.csv', csvLines('t,x,y,d', '0,abc,g,2024-04-02', '1,1.50,h,2024-04-03')); // x sniffs as VARCHAR: '1.50' stays text
  add('e.csv', csvLines('x,t,d,y', '7.5,0,2024-05-02,i')); // other column order
  add('f.csv', csvLines('t;x;y;d', '0;8.5;"j;k";2024-06-02')); // other delimiter, a quoted delimiter
  add('g.csv', csvLines('t,x,y,d', '0,9.5,"l, m",02/07/2024', '1,9.75,n,13/07/2024')); // day-first dates
  add('h.csv', csvLines('t,x,y,d')); // header only
  add('i.csv', csvLines('t,x,y', '0,1.0,o')); // a column missing
  add('j.csv', csvLines('t,x,y,d,extra', '0,1.5,p,2024-08-02,zzz')); // an extra column
  const declarations: Columns[] = [
    { t: 'BIGINT', x: 'VARCHAR', y: 'VARCHAR', d: 'VARCHAR' },
    { t: 'BIGINT', x: 'DOUBLE', y: 'VARCHAR', d: 'DATE' },
    { t: 'DOUBLE', x: 'BIGINT', y: 'VARCHAR', d: 'TIMESTAMP', missing: 'BOOLEAN' },
  ];
  for (const columns of declarations) {
    const expected = await oneByOne(reader, files, 'csv', columns);
    const got = await batched(reader, files, 'csv', columns);
    t.is(got.error, undefined);
    t.deepEqual(got.rows, expected, JSON.stringify(columns));
  }
  // Per-file coercion is kept: declared VARCHAR, a.csv's DOUBLE column gives '1.5'; d.csv's VARCHAR one keeps '1.50'.
  const text = (await batched(reader, files, 'csv', { x: 'VARCHAR' })).rows;
  t.deepEqual(text.filter(([index]) => index === 0 || index === 3).map(([, x]) => x), ['1.5', '2.25', 'abc', '1.50']);
});

test('CSV: a file with the scan\'s own filename column, and the same file twice in one batch, still read as file by file', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reader = await withReader(t);
  const files: string[] = [];
  const add = (name: string, text: string): void => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    files.push(file);
  };
  for (const name of ['a.csv', 'b.csv']) add(name, csvLines('t,x', `0,${name}`, '1,2'));
  add('k1.csv', csvLines('t,x,__duckvisor_file', '0,1.5,clash'));
  add('k2.csv', csvLines('t,x,__duckvisor_file', '1,2.5,clash'));
  for (const name of ['c.csv', 'd.csv']) add(name, csvLines('t,x', `0,${name}`, '1,2'));
  files.push(files[4]!, files[5]!, files[4]!);
  const columns = { t: 'BIGINT', x: 'VARCHAR', __duckvisor_file: 'VARCHAR' };
  const got = await batched(reader, files, 'csv', columns);
  t.is(got.error, undefined);
  t.deepEqual(got.rows, await oneByOne(reader, files, 'csv', columns));
  t.is(got.rows.filter(([index]) => index === 8).length, 2);
});

test('CSV: hundreds of files (several planning queries) read in order with per-file row order', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reader = await withReader(t);
  const files: string[] = [];
  for (let s = 0; s < 300; s++) {
    const file = path.join(dir, `S${String(s).padStart(3, '0')}.csv`);
    const lines = ['t,original,reconstructed'];
    for (let r = 0; r < 40 + (s % 7); r++) lines.push(`${r},${Math.sin(s + r).toFixed(6)},${Math.cos(s * r).toFixed(6)}`);
    writeFileSync(file, csvLines(...lines));
    files.push(file);
  }
  const columns = { t: 'BIGINT', original: 'DOUBLE', reconstructed: 'DOUBLE' };
  const expected = await oneByOne(reader, files, 'csv', columns);
  const got = await batched(reader, files, 'csv', columns);
  t.is(got.error, undefined);
  t.is(got.rows.length, expected.length);
  t.deepEqual(got.rows, expected);
});

test('JSON lines and Parquet: drifting schemas in one batch read exactly as file by file', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reader = await withReader(t);
  const json: string[] = [];
  const jsonFile = (name: string, records: unknown[]): void => {
    const file = path.join(dir, name);
    writeFileSync(file, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    json.push(file);
  };
  jsonFile('a.jsonl', [{ id: 1, p: 0.25, label: 'x' }, { id: 2, p: 0.5, label: 'y' }]);
  jsonFile('b.jsonl', [{ id: 3, p: 0.75, label: 'z' }]);
  jsonFile('c.jsonl', [{ id: 4, p: 1, label: 7 }]); // p integral, label a number
  jsonFile('d.jsonl', [{ label: 'w', id: '5', extra: [1, 2] }]); // id a string, p missing, an extra list
  jsonFile('e.jsonl', [{ id: 6, p: 0.125, label: 'v' }]);
  jsonFile('f.jsonl', [{ id: 7, p: 0.0625, label: 'u' }]);
  const declarations: Columns[] = [{ id: 'BIGINT', p: 'DOUBLE', label: 'VARCHAR' }, { id: 'VARCHAR', p: 'VARCHAR', label: 'VARCHAR', extra: 'VARCHAR' }];
  for (const columns of declarations) {
    const got = await batched(reader, json, 'json', columns);
    t.is(got.error, undefined);
    t.deepEqual(got.rows, await oneByOne(reader, json, 'json', columns), JSON.stringify(columns));
  }

  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  const parquet: string[] = [];
  const selects = [
    'SELECT range AS t, range * 0.5 AS v FROM range(3000)',
    'SELECT range AS t, range * 0.25 AS v FROM range(5)',
    'SELECT range::INTEGER AS t, (range * 2)::VARCHAR AS v FROM range(4)', // other types
    'SELECT range * 0.5 AS v, range AS t FROM range(3)', // other order
    'SELECT range AS t, range * 0.125 AS v, \'k\' AS extra FROM range(2)',
    'SELECT range AS t, range * 0.0625 AS v FROM range(2)',
  ];
  for (const [i, select] of selects.entries()) {
    const file = path.join(dir, `p${i}.parquet`);
    await connection.run(`COPY (${select}) TO '${file}' (FORMAT parquet)`);
    parquet.push(file);
  }
  connection.closeSync();
  instance.closeSync();
  const columns = { t: 'BIGINT', v: 'DOUBLE', extra: 'VARCHAR' };
  const got = await batched(reader, parquet, 'parquet', columns);
  t.is(got.error, undefined);
  t.deepEqual(got.rows, await oneByOne(reader, parquet, 'parquet', columns));
});

test('a file that fails mid-read is named by its position after the rows before it, with none delivered twice', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reader = await withReader(t);
  const files: string[] = [];
  for (let s = 0; s < 6; s++) {
    const file = path.join(dir, `S${s}.csv`);
    const lines = ['t,v'];
    // S3: 100,000 integers with text at row 99,990 — past the type sniffer's sample, so the scan itself
    // fails, after it has streamed some of the file's rows (and the node bindings then end the stream
    // as if it were complete: the reader must notice).
    const rows = s === 3 ? 100000 : 50;
    for (let r = 0; r < rows; r++) lines.push(`${r},${s === 3 && r === 99990 ? 'oops' : r * 10}`);
    writeFileSync(file, csvLines(...lines));
    files.push(file);
  }
  const columns = { t: 'BIGINT', v: 'BIGINT' };
  const got = await batched(reader, files, 'csv', columns);
  t.true(got.error instanceof ArtifactFileError, String(got.error));
  t.is((got.error as ArtifactFileError).index, 3);
  t.regex((got.error as ArtifactFileError).message, /Could not convert string "oops"/);
  const before = (await oneByOne(reader, files.slice(0, 3), 'csv', columns));
  t.deepEqual(got.rows.filter(([index]) => index < 3), before);
  // The bad file's rows delivered before the failure are its first rows, each once.
  const bad = got.rows.filter(([index]) => index === 3).map(([, tValue]) => tValue);
  const firstOutOfPlace = bad.findIndex((value, i) => value !== BigInt(i));
  t.is(firstOutOfPlace, -1, `row ${firstOutOfPlace} of the bad file is ${String(bad[firstOutOfPlace])}: delivered twice or out of order`);
  t.true(bad.length < 100000);
  t.false(got.rows.some(([index]) => index > 3));

  // A file that cannot even be planned (a broken symlink) fails its whole planning query: still named.
  const files2 = [files[0]!, files[1]!, path.join(dir, 'gone.csv'), files[2]!];
  symlinkSync(path.join(dir, 'nowhere.csv'), files2[2]!);
  const got2 = await batched(reader, files2, 'csv', columns);
  t.is((got2.error as ArtifactFileError).index, 2);
  t.deepEqual(got2.rows, await oneByOne(reader, files2.slice(0, 2), 'csv', columns));
});

test('mlflow-artifacts: a signal CSV that fails late in the file (not silently cut short) skips its run, naming the run and the artifact; other runs are read in full', async (t) => {
  const copy = copyFixture('filestore');
  t.teardown(copy.cleanup);
  const imputation = path.join(copy.dir, 'mlruns', '940304421003085572');
  const runIds = readdirSync(imputation).filter((name) => /^[0-9a-f]{32}$/.test(name) && existsSync(path.join(imputation, name, 'artifacts', 'signals', 'csv'))).sort();
  const badRun = runIds[0]!;
  const csvDir = path.join(imputation, badRun, 'artifacts', 'signals', 'csv');
  const lines = ['t,original,reconstructed'];
  for (let r = 0; r < 100000; r++) lines.push(`${r},${r === 99990 ? 'oops' : (r / 7).toFixed(3)},${(r / 9).toFixed(3)}`);
  writeFileSync(path.join(csvDir, 'S002.csv'), csvLines(...lines));
  mkdirSync(path.join(copy.dir, 'out'));
  const staging = path.join(copy.dir, 'out', 'artifacts.duckdb');
  const result = await execa('node', [compiledPath('extractors/run-extractor.js'), 'mlflow-artifacts'], {
    env: {
      [childEnv.staging]: staging, [childEnv.heartbeatTimeout]: '30000',
      [childEnv.options]: JSON.stringify({ source: sourceFor('filestore', copy.dir), experiments: ['940304421003085572'], tables: [{ glob: 'signals/csv/*.csv', table: 'signals', columns: { t: 'BIGINT', original: 'DOUBLE', reconstructed: 'DOUBLE' } }] }),
    },
    reject: false,
    all: true,
  });
  t.is(result.exitCode, 0, result.all);
  t.regex(result.all ?? '', new RegExp(`skipped unit ${badRun}: run ${badRun}: signals/csv/S002\\.csv: cannot read as csv: .*Could not convert string "oops"`, 's'));
  const instance = await DuckDBInstance.create(staging, { access_mode: 'READ_ONLY' });
  const connection = await instance.connect();
  t.teardown(() => {
    connection.closeSync();
    instance.closeSync();
  });
  const rows = (await connection.runAndReadAll(`SELECT count(*) FILTER (WHERE run_id = '${badRun}')::INTEGER AS bad, count(DISTINCT run_id)::INTEGER AS runs,
      count(*) FILTER (WHERE row = 0)::INTEGER AS files, (count(*) = count(DISTINCT (run_id, artifact_path, row)))::BOOLEAN AS unique_rows FROM signals`)).getRowObjectsJS()[0]!;
  t.is(rows['bad'], 0);
  t.is(rows['runs'], runIds.length - 1);
  // Every other run's every CSV (4 per run in the fixture) is there, each row once.
  t.is(rows['files'], (runIds.length - 1) * readdirSync(csvDir).length);
  t.true(rows['unique_rows']);
});
