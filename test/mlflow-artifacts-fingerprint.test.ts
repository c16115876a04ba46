// CSV plans from fingerprints (extractors/mlflow/artifact-tables.ts csvFingerprint): a file is not
// sniffed when a file with the same fingerprint was, so two files with the same fingerprint must get
// the same answer from DuckDB's sniffer. Checked against the sniffer itself on files built to collide
// (same header, same non-decimal values, other decimals) and on near misses; then the batched read of a
// run's worth of such files must still equal reading each file on its own.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { DuckDBInstance } from '@duckdb/node-api';
import { ArtifactTableReader, csvFingerprint, type FileRows } from '../extractors/mlflow/artifact-tables.js';
import type { CellValue, Columns } from '../extractors/sdk/api.js';
import { tempDir } from './helpers/job.js';

/** A deterministic pseudo-random sequence (tests must not depend on the run). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Kinds of column: decimals vary from file to file; every other value is the same in every file of a template. */
const decimalKinds: Record<string, (next: () => number) => string> = {
  signal: (next) => (next() * 2 - 1).toFixed(6),
  zeroFraction: (next) => `${Math.floor(next() * 100)}.0`,
  long: (next) => `${Math.floor(next() * 9e15) + 1e15}.${String(Math.floor(next() * 1e15)).padStart(16, '1')}`,
  negativeZero: (next) => (next() < 0.5 ? '-0.0' : '0.5'),
};
const fixedKinds: Record<string, string[]> = {
  index: Array.from({ length: 8 }, (_, i) => String(i)),
  bits: ['0', '1', '1', '0', '1', '0', '0', '1'],
  words: ['true', 'false', 'true', 'true', 'false', 'false', 'true', 'false'],
  dates: ['2024-01-02', '2024-01-03', '2024-02-01', '2024-03-04', '2024-05-06', '2024-07-08', '2024-09-10', '2024-11-12'],
  leadingZero: ['00.5', '01.25', '0.5', '00.75', '02.5', '0.25', '00.1', '03.5'],
  mixed: ['1.5', 'nan', '2', 'inf', '3.25', '-inf', '4', '5.5'],
  empty: ['', '1.5', '', '2.5', '', '3.5', '', '4.5'],
  exponent: ['1e5', '2.5E-3', '3', '4e1', '5.0', '6e0', '7', '8e-1'],
};

/** Templates: a header and a kind per column. */
function templates(): { header: string[]; kinds: string[] }[] {
  const decimal = Object.keys(decimalKinds);
  const fixed = Object.keys(fixedKinds);
  const out: { header: string[]; kinds: string[] }[] = [];
  for (const first of fixed) for (const second of decimal) out.push({ header: ['t', 'x', 'y'], kinds: [first, second, decimal[(decimal.indexOf(second) + 1) % decimal.length]!] });
  for (const kind of [...fixed, ...decimal]) out.push({ header: ['only', 'signal'], kinds: [kind, 'signal'] });
  return out;
}

function csvText(template: { header: string[]; kinds: string[] }, next: () => number): string {
  const lines = [template.header.join(',')];
  for (let row = 0; row < 8; row++) {
    lines.push(template.kinds.map((kind) => (kind in decimalKinds ? decimalKinds[kind]!(next) : fixedKinds[kind]![row]!)).join(','));
  }
  return `${lines.join('\n')}\n`;
}

test('files with the same fingerprint get the same plan from DuckDB\'s sniffer', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
  const connection = await instance.connect();
  t.teardown(() => {
    connection.closeSync();
    instance.closeSync();
  });
  const next = random(20261205);
  const byFingerprint = new Map<string, { file: string; plan: string }[]>();
  let unfingerprinted = 0;
  for (const [index, template] of templates().entries()) {
    for (let copy = 0; copy < 3; copy++) {
      const file = path.join(dir, `f${index}-${copy}.csv`);
      const text = csvText(template, next);
      writeFileSync(file, text);
      const fingerprint = csvFingerprint(text);
      if (fingerprint === undefined) {
        unfingerprinted++;
        continue;
      }
      const prompt = String((await connection.runAndReadAll(`SELECT Prompt FROM sniff_csv('${file}', header = true)`)).getRows()[0]![0]);
      const plan = prompt.slice(prompt.indexOf(`', `) + 3);
      byFingerprint.set(fingerprint, [...(byFingerprint.get(fingerprint) ?? []), { file, plan }]);
    }
  }
  const collisions = [...byFingerprint.values()].filter((files) => files.length > 1);
  // Templates whose decimal columns sit in the same places share fingerprints too, across templates.
  const shared = collisions.reduce((count, files) => count + files.length, 0);
  t.true(collisions.length >= 10 && shared >= 100, `${collisions.length} fingerprints shared by ${shared} files`);
  for (const files of collisions) {
    for (const other of files.slice(1)) t.is(other.plan, files[0]!.plan, `${path.basename(other.file)} and ${path.basename(files[0]!.file)} share a fingerprint`);
  }
  t.is(unfingerprinted, 0, 'every generated file is plain');
});

test('what is not plain has no fingerprint: quotes, other delimiters, CR, spaces, ragged or empty lines, a header alone', (t) => {
  const plain = 't,x\n0,1.5\n1,2.5\n';
  t.not(csvFingerprint(plain), undefined);
  for (const text of ['t,x\n0,"1.5"\n', 't;x\n0;1.5\n', 't,x\r\n0,1.5\r\n', 't,x\n0,1 5\n', 't,x\n0,1.5,9\n', 't,x\n0,1.5\n\n1,2.5\n', 't,x\n', 't\tx\n0\t1\n', '#c\nt,x\n0,1\n']) {
    t.is(csvFingerprint(text), undefined, JSON.stringify(text));
  }
  t.is(csvFingerprint('t,x\n0,2.75\n1,-0.5\n'), csvFingerprint(plain), 'other plain decimals, same fingerprint');
  t.not(csvFingerprint('t,x\n0,1.5\n2,2.5\n'), csvFingerprint(plain), 'another integer is another value');
  t.not(csvFingerprint('t,x\n0,01.5\n1,2.5\n'), csvFingerprint(plain), 'a leading zero is not a plain decimal');
  t.not(csvFingerprint('t,y\n0,1.5\n1,2.5\n'), csvFingerprint(plain), 'another header');
});

test('a run\'s worth of files planned from fingerprints reads exactly as file by file, near misses included', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const reader = await ArtifactTableReader.open();
  t.teardown(() => reader.close());
  const next = random(7);
  const files: string[] = [];
  for (let subject = 0; subject < 300; subject++) {
    const file = path.join(dir, `S${String(subject).padStart(3, '0')}.csv`);
    // Mostly signal files alike; every 37th a near miss that its own sniff reads otherwise.
    const template = subject % 37 === 5 ? { header: ['t', 'x', 'y'], kinds: ['index', 'leadingZero', 'signal'] } : subject % 37 === 11 ? { header: ['t', 'x', 'y'], kinds: ['index', 'signal', 'mixed'] } : { header: ['t', 'x', 'y'], kinds: ['index', 'signal', 'signal'] };
    writeFileSync(file, csvText(template, next));
    files.push(file);
  }
  const columns: Columns = { t: 'BIGINT', x: 'VARCHAR', y: 'VARCHAR' };
  const expected: [number, ...CellValue[]][] = [];
  for (const [index, file] of files.entries()) for await (const batch of reader.rows(file, 'csv', columns)) for (const row of batch) expected.push([index, ...row]);
  const got: [number, ...CellValue[]][] = [];
  for await (const { index, rows } of reader.readMany(files, 'csv', columns) as AsyncGenerator<FileRows>) for (const row of rows) got.push([index, ...row]);
  t.is(got.length, 300 * 8);
  t.deepEqual(got, expected);
  t.true(reader.filesSniffed < 30, `${reader.filesSniffed} of 300 files sniffed`);
});
