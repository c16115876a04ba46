// `duckvisorctl lint [PATH...]`: the static guardrail that catches unbounded accumulation, one-shot
// bulk writes, loops without progress and whole-source reads in extractors before they ever run.
// TS/JS files are parsed in-process with the TypeScript compiler API; Python files by one python3
// process running python_lint.py (Python's own `ast`). Exit: 0 clean, 1 findings, 2 usage/parse errors.
import { readFileSync, realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { findConfigFile, type LintConfig, LintConfigError, loadLintConfig } from './config.js';
import { collectFiles, MissingPathError } from './files.js';
import { lintPythonFiles, PythonLintError } from './python_runner.js';
import { exitCodeOf, formatJson, formatText } from './report.js';
import { applySuppressions } from './suppress.js';
import { compileMatchers } from './ts_context.js';
import { type LintReport, RULE_SUMMARIES, RULES } from './types.js';

export type { Finding, LintReport, ParseError, RuleName, SuppressedFinding } from './types.js';
export { DEFAULT_CONFIG, type LintConfig, loadLintConfig } from './config.js';

/** Why: the programmatic entry (tests, bench, other tools) — lints paths, returns the report. */
export async function lintPaths(paths: readonly string[], config: LintConfig = loadLintConfig(undefined)): Promise<LintReport> {
  const files = collectFiles(paths, config.skipDirectories);
  const report: LintReport = {
    files: { typescript: files.typescript.length, python: files.python.length },
    findings: [],
    suppressed: [],
    parseErrors: [],
  };
  // Start Python first so its process runs while the TS files are analyzed here.
  const pythonAnswer = lintPythonFiles(files.python, config);
  pythonAnswer.catch(() => undefined); // handled when awaited below
  const matchers = compileMatchers(config);
  // Loaded here, after python3 was spawned, so the two start-up costs overlap.
  const { lintTypeScriptFile } = files.typescript.length > 0 ? await import('./ts_lint.js') : { lintTypeScriptFile: undefined };
  for (const file of files.typescript) {
    const result = lintTypeScriptFile!(file, matchers);
    if (result.parseError !== undefined) {
      report.parseErrors.push({ file, ...result.parseError });
      continue;
    }
    const applied = applySuppressions(file, result.text, 'typescript', result.findings);
    report.findings.push(...applied.findings);
    report.suppressed.push(...applied.suppressed);
  }
  for (const result of (await pythonAnswer).files) {
    if (result.parseError !== null) {
      report.parseErrors.push({ file: result.file, ...result.parseError });
      continue;
    }
    const text = readFileSync(result.file, 'utf8');
    const applied = applySuppressions(result.file, text, 'python', result.findings);
    report.findings.push(...applied.findings);
    report.suppressed.push(...applied.suppressed);
  }
  const byPosition = <T extends { file: string; line: number; column: number }>(a: T, b: T): number =>
    a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column;
  report.findings.sort(byPosition);
  report.suppressed.sort(byPosition);
  report.parseErrors.sort(byPosition);
  return report;
}

const USAGE = `usage: duckvisorctl lint [--json] [--config FILE | --no-config] [--list-rules] [PATH...]

Checks extractors (.ts .tsx .mts .cts .js .mjs .cjs .py) for patterns that let a job run away:
${RULES.map((rule) => `  ${rule.padEnd(27)} ${RULE_SUMMARIES[rule]}`).join('\n')}

Directories are walked (node_modules, dist, .venv, .git are skipped); PATH defaults to ".".
Suppress one finding with a reason, on its line or the line above:
  # duckvisor: allow unbounded-accumulation -- bounded by 4 configs     (Python)
  // duckvisor: allow materialize-all -- the manifest is < 1 KiB         (TS/JS)
Configuration: .duckvisor-lint.json in the current directory or above (or --config FILE); see docs/lint.md.
Exit status: 0 clean, 1 findings, 2 usage error, unreadable config or a file that does not parse.
`;

/** Output sinks, replaceable for tests. */
export interface LintIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const processIo: LintIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

interface ParsedArguments {
  json: boolean;
  configFile: string | undefined;
  noConfig: boolean;
  listRules: boolean;
  help: boolean;
  paths: string[];
}

function parseArguments(argv: readonly string[]): ParsedArguments {
  const parsed: ParsedArguments = { json: false, configFile: undefined, noConfig: false, listRules: false, help: false, paths: [] };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    if (arg === '--') {
      parsed.paths.push(...argv.slice(index + 1));
      break;
    } else if (arg === '--json') parsed.json = true;
    else if (arg === '--no-config') parsed.noConfig = true;
    else if (arg === '--list-rules') parsed.listRules = true;
    else if (arg === '-h' || arg === '--help') parsed.help = true;
    else if (arg === '--config') {
      const value = argv[++index];
      if (value === undefined) throw new UsageError('--config needs a file: --config .duckvisor-lint.json');
      parsed.configFile = value;
    } else if (arg.startsWith('--config=')) parsed.configFile = arg.slice('--config='.length);
    else if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`);
    else parsed.paths.push(arg);
  }
  return parsed;
}

class UsageError extends Error {}

/** Why: `duckvisorctl lint ...` dispatches here with the arguments after `lint`; returns the exit code. */
export async function runLint(argv: string[], io: LintIo = processIo): Promise<number> {
  let args: ParsedArguments;
  try {
    args = parseArguments(argv);
  } catch (error) {
    io.stderr(`duckvisorctl lint: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    io.stdout(USAGE);
    return 0;
  }
  if (args.listRules) {
    io.stdout(RULES.map((rule) => `${rule}\t${RULE_SUMMARIES[rule]}`).join('\n') + '\n');
    return 0;
  }
  try {
    const config = loadLintConfig(args.noConfig ? undefined : (args.configFile ?? findConfigFile(process.cwd())));
    const report = await lintPaths(args.paths.length > 0 ? args.paths : ['.'], config);
    const code = exitCodeOf(report);
    io.stdout(args.json ? formatJson(report, code) : formatText(report));
    return code;
  } catch (error) {
    if (error instanceof LintConfigError || error instanceof MissingPathError || error instanceof PythonLintError) {
      io.stderr(`duckvisorctl lint: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

function isMainModule(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href; // realpath: symlinked bins, npm -g
  } catch {
    return false;
  }
}

const invokedDirectly = isMainModule();
if (invokedDirectly) {
  runLint(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`duckvisorctl lint: internal error: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 2;
    },
  );
}
