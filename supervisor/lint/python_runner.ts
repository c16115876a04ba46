// Runs supervisor/lint/python_lint.py once for all Python files (one python3 process per lint run)
// and returns its findings per file.
import path from 'node:path';
import { execa } from 'execa';
import { z } from 'zod';
import { projectRoot } from '../paths.js';
import type { LintConfig } from './config.js';
import { ANALYZER_RULES } from './types.js';

/** Where the Python analyzer lives (shipped as source; it is not compiled). */
export const PYTHON_LINT_SCRIPT = path.join(projectRoot, 'supervisor', 'lint', 'python_lint.py');

const position = { line: z.number().int().positive(), column: z.number().int().positive() };

const answerSchema = z.object({
  files: z.array(
    z.object({
      file: z.string(),
      findings: z.array(
        z.object({
          ...position,
          rule: z.enum(ANALYZER_RULES),
          message: z.string(),
          cause: z.object({ line: z.number().int().positive(), rule: z.enum(ANALYZER_RULES) }).optional(),
        }),
      ),
      parseError: z.object({ ...position, message: z.string() }).nullable(),
    }),
  ),
});

export type PythonLintAnswer = z.infer<typeof answerSchema>;

/** Raised when python3 is missing or the analyzer fails; the message says what to do. */
export class PythonLintError extends Error {}

/** The interpreter used: `DUCKVISOR_PYTHON` if set, else `python3` from PATH. */
export function pythonInterpreter(): string {
  return process.env['DUCKVISOR_PYTHON'] ?? 'python3';
}

/** Lints the given Python files in one python3 process. */
export async function lintPythonFiles(files: readonly string[], config: LintConfig): Promise<PythonLintAnswer> {
  if (files.length === 0) return { files: [] };
  const interpreter = pythonInterpreter();
  const request = JSON.stringify({
    files,
    config: {
      extractionSources: config.extractionSources,
      progressCalls: config.progressCalls,
      progressMarkers: config.progressMarkers,
      bulkWriteCalls: config.bulkWriteCalls,
    },
  });
  let stdout: string;
  try {
    const result = await execa(interpreter, [PYTHON_LINT_SCRIPT], { input: request, maxBuffer: 256 * 1024 * 1024 });
    stdout = result.stdout;
  } catch (error) {
    const failure = error as { code?: string; stderr?: string; shortMessage?: string };
    if (failure.code === 'ENOENT') {
      throw new PythonLintError(
        `cannot run ${interpreter} to lint ${files.length} Python file(s): not found. Install Python 3.9+ or set DUCKVISOR_PYTHON to an interpreter.`,
      );
    }
    throw new PythonLintError(
      `the Python analyzer (${PYTHON_LINT_SCRIPT}) failed: ${failure.shortMessage ?? String(error)}\n${failure.stderr ?? ''}`.trim(),
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(stdout);
  } catch {
    throw new PythonLintError(`the Python analyzer printed something that is not JSON: ${stdout.slice(0, 200)}`);
  }
  const parsed = answerSchema.safeParse(data);
  if (!parsed.success) {
    throw new PythonLintError(`the Python analyzer's answer has an unexpected shape: ${parsed.error.message}`);
  }
  return parsed.data;
}
