// `duckvisorctl lint`: every fixture in test/fixtures/lint declares its expected findings with
// `expect: <rule>[, <rule>]` comments on the flagged line; a fixture without one must be clean.
// Also drives the real CLI (exit codes, --json, unparseable files, suppressions, config).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { lintPaths, type LintReport } from '../supervisor/lint/index.js';
import { compiledPath, projectRoot } from '../supervisor/paths.js';

const fixtureRoot = path.join(projectRoot, 'test', 'fixtures', 'lint');
const lintMain = compiledPath('supervisor/lint/index.ts');
const EXPECT = /(?:#|\/\/)\s*expect:\s*([\w-]+(?:\s*,\s*[\w-]+)*)/;

function fixtureFiles(language: 'python' | 'ts'): string[] {
  const dir = path.join(fixtureRoot, language);
  return readdirSync(dir)
    .filter((name) => /\.(py|ts|tsx|mts|js|mjs|cjs)$/.test(name))
    .sort()
    .map((name) => path.join(dir, name));
}

/** `line rule` strings declared by a fixture's expect comments. */
function expectedFindings(file: string): string[] {
  const expected: string[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, index) => {
      const match = EXPECT.exec(text);
      if (match) for (const rule of match[1]!.split(',')) expected.push(`${index + 1} ${rule.trim()}`);
    });
  return expected.sort();
}

const pythonFixtures = fixtureFiles('python');
const tsFixtures = fixtureFiles('ts');
let fixtureReport: Promise<LintReport> | undefined;
const lintFixtures = (): Promise<LintReport> => (fixtureReport ??= lintPaths([fixtureRoot]));

test('the corpus has at least 30 positive and negative examples per language', (t) => {
  for (const [language, files] of [['python', pythonFixtures], ['ts', tsFixtures]] as const) {
    const positives = files.filter((file) => expectedFindings(file).length > 0);
    const negatives = files.filter((file) => expectedFindings(file).length === 0);
    t.true(files.length >= 30, `${language}: ${files.length} fixtures`);
    t.true(positives.length >= 10, `${language}: ${positives.length} positive fixtures`);
    t.true(negatives.length >= 10, `${language}: ${negatives.length} negative fixtures`);
  }
});

for (const file of [...pythonFixtures, ...tsFixtures]) {
  const name = path.relative(fixtureRoot, file);
  test(`fixture ${name}: exactly the declared findings`, async (t) => {
    const report = await lintFixtures();
    t.deepEqual(report.parseErrors.filter((error) => error.file === file), []);
    const actual = report.findings
      .filter((finding) => finding.file === file)
      .map((finding) => `${finding.line} ${finding.rule}`)
      .sort();
    t.deepEqual(actual, expectedFindings(file));
  });
}

test('the seed streaming pattern produces no finding at all (not even suppressed)', async (t) => {
  const report = await lintFixtures();
  for (const file of ['python/seed_correct_streaming.py', 'ts/seed_correct_streaming.ts']) {
    const full = path.join(fixtureRoot, file);
    t.deepEqual(report.findings.filter((f) => f.file === full), [], file);
    t.deepEqual(report.suppressed.filter((f) => f.file === full), [], file);
  }
});

test('reasoned suppressions are kept in the report with their reasons', async (t) => {
  const report = await lintFixtures();
  const pythonSuppressed = report.suppressed.filter((f) => f.file.endsWith('python/suppressed_with_reason.py'));
  t.deepEqual(
    pythonSuppressed.map((f) => `${f.line} ${f.rule} ${f.reason}`),
    ['8 unbounded-accumulation bounded by 4 configs', '9 bulk-write-after-loop bounded by 4 configs'],
  );
});

// ---- the CLI -------------------------------------------------------------------------------

function tempDir(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-lint-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function runCli(args: string[], cwd: string) {
  return execa('node', [lintMain, ...args], { cwd, reject: false });
}

const SEED_WRONG = 'all_rows = []\nfor item in large_dataset:\n    all_rows.append(process(item))\nconn.executemany(query, all_rows)\n';

test('cli: exit 0 and a summary on a clean tree; exit 1 with file:line:col lines on findings', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'clean.py'), 'print("hello")\n');
  writeFileSync(path.join(dir, 'clean.ts'), 'export const x = [1, 2, 3].map((n) => n * 2);\n');
  const clean = await runCli(['.'], dir);
  t.is(clean.exitCode, 0, clean.stderr);
  t.regex(clean.stdout, /2 file\(s\) \(1 TS\/JS, 1 Python\), 0 findings, 0 suppressed/);

  writeFileSync(path.join(dir, 'wrong.py'), SEED_WRONG);
  const dirty = await runCli([], dir);
  t.is(dirty.exitCode, 1);
  const lines = dirty.stdout.trim().split('\n');
  t.deepEqual(lines.slice(0, 2), [
    'wrong.py:3:5 unbounded-accumulation `all_rows` (created at line 1) grows inside the loop at line 2 and is never cleared; flush and clear it when it reaches a size threshold inside the loop',
    'wrong.py:4:1 bulk-write-after-loop writes `all_rows`, accumulated by the loop at line 2, in one go after the loop; write in bounded batches inside the loop instead',
  ]);
  t.regex(lines.at(-1)!, /2 finding\(s\) \(bulk-write-after-loop 1, unbounded-accumulation 1\)/);
});

test('cli: --json gives findings, suppressions and the exit code', async (t) => {
  const dir = tempDir(t);
  writeFileSync(
    path.join(dir, 'job.ts'),
    [
      'const rows: unknown[] = [];',
      'for (const run of reader.iterate()) {',
      '  // duckvisor: allow unbounded-accumulation -- at most 4 runs in this store',
      '  rows.push(run);',
      '  ctx.progress(rows.length, 4, "runs");',
      '}',
      'const names = fs.readdirSync(dir);',
      'for (const name of names) { handle(name); } // duckvisor: allow no-progress-in-loop',
      '',
    ].join('\n'),
  );
  const result = await runCli(['--json', 'job.ts'], dir);
  t.is(result.exitCode, 1);
  const output = JSON.parse(result.stdout) as {
    exitCode: number;
    findings: { file: string; line: number; column: number; rule: string }[];
    suppressed: { line: number; rule: string; reason: string }[];
    files: { typescript: number; python: number };
  };
  t.is(output.exitCode, 1);
  t.deepEqual(output.files, { typescript: 1, python: 0 });
  t.deepEqual(output.findings.map((f) => [f.file, f.line, f.column, f.rule]), [['job.ts', 8, 45, 'suppression-without-reason']]);
  t.deepEqual(
    output.suppressed.map((s) => [s.line, s.rule, s.reason]),
    [
      [4, 'unbounded-accumulation', 'at most 4 runs in this store'],
      [8, 'no-progress-in-loop', ''],
    ],
  );
});

test('cli: the summary counts suppressions per rule', async (t) => {
  const dir = tempDir(t);
  writeFileSync(
    path.join(dir, 'small.py'),
    [
      'import os',
      'rows = []',
      'for name in os.listdir("conf"):  # duckvisor: allow no-progress-in-loop -- conf/ has 4 files',
      '    # duckvisor: allow unbounded-accumulation -- one row per config file, 4 files',
      '    rows.append(name)',
      'conn.executemany("INSERT INTO c VALUES (?)", rows)',
      '',
    ].join('\n'),
  );
  const result = await runCli(['small.py'], dir);
  t.is(result.exitCode, 0, result.stdout);
  t.regex(result.stdout, /0 findings, 3 suppressed \(bulk-write-after-loop 1, no-progress-in-loop 1, unbounded-accumulation 1\)/);
  t.regex(result.stdout, /suppressed small.py:5 unbounded-accumulation -- one row per config file, 4 files/);
});

test('cli: a file that does not parse is reported with its line and exits 2; other files are still linted', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'broken.py'), 'def ok():\n    return 1\n\ndef broken(:\n    pass\n');
  writeFileSync(path.join(dir, 'broken.ts'), 'const a = 1;\nconst b = ;\nconst c = 2;\n');
  writeFileSync(path.join(dir, 'wrong.py'), SEED_WRONG);
  const result = await runCli(['.'], dir);
  t.is(result.exitCode, 2);
  t.regex(result.stdout, /^broken\.py:4:\d+ parse-error SyntaxError: /m);
  t.regex(result.stdout, /^broken\.ts:2:\d+ parse-error /m);
  t.regex(result.stdout, /^wrong\.py:3:5 unbounded-accumulation /m);
  t.regex(result.stdout, /2 file\(s\) could not be parsed/);
  const json = await runCli(['--json', '.'], dir);
  t.is(json.exitCode, 2);
  const parsed = JSON.parse(json.stdout) as { parseErrors: { file: string; line: number }[] };
  t.deepEqual(parsed.parseErrors.map((e) => [e.file, e.line]), [['broken.py', 4], ['broken.ts', 2]]);
});

test('cli: usage errors exit 2 with a message', async (t) => {
  const dir = tempDir(t);
  const unknown = await runCli(['--frobnicate'], dir);
  t.is(unknown.exitCode, 2);
  t.regex(unknown.stderr, /unknown option --frobnicate/);
  const missing = await runCli(['does-not-exist'], dir);
  t.is(missing.exitCode, 2);
  t.regex(missing.stderr, /no such file or directory: does-not-exist/);
  const noValue = await runCli(['--config'], dir);
  t.is(noValue.exitCode, 2);
  const help = await runCli(['--help'], dir);
  t.is(help.exitCode, 0);
  t.regex(help.stdout, /unbounded-accumulation/);
});

test('cli: walking skips node_modules, dist, .venv and .git, and ignores other extensions', async (t) => {
  const dir = tempDir(t);
  for (const skipped of ['node_modules/pkg', 'dist', '.venv/lib', '.git']) {
    mkdirSync(path.join(dir, skipped), { recursive: true });
    writeFileSync(path.join(dir, skipped, 'wrong.py'), SEED_WRONG);
  }
  writeFileSync(path.join(dir, 'notes.txt'), SEED_WRONG);
  writeFileSync(path.join(dir, 'types.d.ts'), 'declare const x: number;\n');
  const result = await runCli(['.'], dir);
  t.is(result.exitCode, 0, result.stdout);
  t.regex(result.stdout, /0 file\(s\)/);
});

test('cli: .duckvisor-lint.json extends the source and progress lists; a bad config exits 2 naming the field', async (t) => {
  const dir = tempDir(t);
  writeFileSync(
    path.join(dir, 'job.py'),
    ['for run in store.walk_runs():', '    handle(run)', 'for row in conn.execute("SELECT 1"):', '    beat.ping()', ''].join('\n'),
  );
  const defaults = await runCli(['job.py'], dir);
  t.is(defaults.exitCode, 1);
  t.deepEqual(findingLines(defaults.stdout), ['job.py:3:1 no-progress-in-loop']);

  writeFileSync(
    path.join(dir, '.duckvisor-lint.json'),
    JSON.stringify({ extraExtractionSources: ['walk_runs'], extraProgressCalls: ['beat.ping'] }),
  );
  const configured = await runCli(['job.py'], dir);
  t.deepEqual(findingLines(configured.stdout), ['job.py:1:1 no-progress-in-loop']);

  const ignored = await runCli(['--no-config', 'job.py'], dir);
  t.deepEqual(findingLines(ignored.stdout), ['job.py:3:1 no-progress-in-loop']);

  writeFileSync(path.join(dir, 'other.json'), JSON.stringify({ progressCals: ['x'] }));
  const bad = await runCli(['--config', 'other.json', 'job.py'], dir);
  t.is(bad.exitCode, 2);
  t.regex(bad.stderr, /other\.json is invalid: .*progressCals/);
});

function findingLines(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter((line) => /^\S+:\d+:\d+ /.test(line))
    .map((line) => line.split(' ').slice(0, 2).join(' '));
}
