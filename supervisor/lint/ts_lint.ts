// Lints one TS/JS file: parse with ts.createSourceFile (no program, no type checker — fast), then
// run every rule over its scopes.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { checkAccumulation } from './ts_accumulation.js';
import { type Matchers, RuleContext } from './ts_context.js';
import { checkMaterialize } from './ts_materialize.js';
import { checkProgress, collectProgressFacts } from './ts_progress.js';
import { collectScopes } from './ts_syntax.js';
import type { RawFinding } from './types.js';

/** The outcome for one file: its text (for suppressions), findings, or the first parse error. */
export interface TypeScriptFileResult {
  text: string;
  findings: RawFinding[];
  parseError: { line: number; column: number; message: string } | undefined;
}

function scriptKind(file: string): ts.ScriptKind {
  switch (path.extname(file).toLowerCase()) {
    case '.tsx':
      return ts.ScriptKind.TSX;
    case '.jsx':
      return ts.ScriptKind.JSX;
    case '.js':
    case '.mjs':
    case '.cjs':
      return ts.ScriptKind.JS;
    default:
      return ts.ScriptKind.TS;
  }
}

/** Lints source text as if read from `file` (the extension picks TS, TSX or JS parsing). */
export function lintTypeScriptSource(file: string, text: string, matchers: Matchers): TypeScriptFileResult {
  const sourceFile = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, scriptKind(file));
  const diagnostics = (sourceFile as unknown as { parseDiagnostics?: readonly ts.DiagnosticWithLocation[] }).parseDiagnostics ?? [];
  const firstError = diagnostics[0];
  if (firstError !== undefined) {
    const at = sourceFile.getLineAndCharacterOfPosition(firstError.start);
    return {
      text,
      findings: [],
      parseError: { line: at.line + 1, column: at.character + 1, message: ts.flattenDiagnosticMessageText(firstError.messageText, ' ') },
    };
  }
  const context = new RuleContext(sourceFile, matchers);
  const progressFacts = collectProgressFacts(context);
  for (const scope of collectScopes(sourceFile)) {
    checkAccumulation(context, scope, progressFacts);
    checkProgress(context, scope, progressFacts);
  }
  checkMaterialize(context);
  context.findings.sort((a, b) => a.line - b.line || a.column - b.column || a.rule.localeCompare(b.rule));
  return { text, findings: context.findings, parseError: undefined };
}

/** Reads and lints one file; an unreadable file is reported like a parse error. */
export function lintTypeScriptFile(file: string, matchers: Matchers): TypeScriptFileResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return { text: '', findings: [], parseError: { line: 1, column: 1, message: `cannot read: ${(error as Error).message}` } };
  }
  return lintTypeScriptSource(file, text, matchers);
}
