// What every TS/JS rule receives: the parsed file, the configured call matchers and a place to report.
import type ts from 'typescript';
import type { LintConfig } from './config.js';
import { CallMatcher } from './patterns.js';
import type { AnalyzerRule, RawFinding } from './types.js';

/** Compiled configuration shared by all files of a run. */
export interface Matchers {
  sources: CallMatcher;
  progress: CallMatcher;
  writes: CallMatcher;
  markers: readonly string[];
}

/** Why: compiling the patterns once per run keeps per-file work to the walk itself. */
export function compileMatchers(config: LintConfig): Matchers {
  return {
    sources: new CallMatcher(config.extractionSources),
    progress: new CallMatcher(config.progressCalls),
    writes: new CallMatcher(config.bulkWriteCalls),
    markers: config.progressMarkers,
  };
}

/** One file under analysis. */
export class RuleContext {
  readonly findings: RawFinding[] = [];

  constructor(
    readonly sourceFile: ts.SourceFile,
    readonly matchers: Matchers,
  ) {}

  /** Records a finding at the start of `node`. */
  report(node: ts.Node, rule: AnalyzerRule, message: string, cause?: RawFinding['cause']): void {
    const start = this.sourceFile.getLineAndCharacterOfPosition(node.getStart(this.sourceFile));
    this.findings.push({ line: start.line + 1, column: start.character + 1, rule, message, ...(cause === undefined ? {} : { cause }) });
  }

  /** 1-based line of a node's start. */
  lineOf(node: ts.Node): number {
    return this.sourceFile.getLineAndCharacterOfPosition(node.getStart(this.sourceFile)).line + 1;
  }

  /** 1-based line of a node's end. */
  endLineOf(node: ts.Node): number {
    return this.sourceFile.getLineAndCharacterOfPosition(node.getEnd()).line + 1;
  }

  /** Source text of a node, for messages and heuristics. */
  text(node: ts.Node): string {
    return node.getText(this.sourceFile);
  }
}
