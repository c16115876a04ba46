// The nouns of `duckvisorctl lint`: rules, findings, suppressions and the report one run produces.

/** Rules a finding can carry; the names are the ones users write in suppression comments. */
export const ANALYZER_RULES = [
  'unbounded-accumulation',
  'bulk-write-after-loop',
  'no-progress-in-loop',
  'materialize-all',
] as const;

/** Every rule, including the one the suppression pass emits. */
export const RULES = [...ANALYZER_RULES, 'suppression-without-reason'] as const;

export type RuleName = (typeof RULES)[number];

/** Rules that an analyzer emits (the last one is emitted by the suppression pass). */
export type AnalyzerRule = (typeof ANALYZER_RULES)[number];

/** Why a rule exists, one line each; printed by `--list-rules` and used in docs. */
export const RULE_SUMMARIES: Record<RuleName, string> = {
  'unbounded-accumulation': 'a collection created outside a loop and grown inside it, cleared only after the loop or never',
  'bulk-write-after-loop': 'a bulk write (executemany, appender, insert, to_sql, ...) of a collection accumulated by a loop',
  'no-progress-in-loop': 'a loop over an extraction source (MLflow, DB cursor, file listing) that reports no progress',
  'materialize-all': 'reads a whole source into memory where a streaming/paged API exists',
  'suppression-without-reason': 'a `duckvisor: allow` comment that does not say why (`-- <reason>`)',
};

/** One problem at one place; line and column are 1-based. */
export interface Finding {
  file: string;
  line: number;
  column: number;
  rule: RuleName;
  message: string;
}

/** A finding an analyzer reports before suppressions are applied. */
export interface RawFinding {
  line: number;
  column: number;
  rule: AnalyzerRule;
  message: string;
  /** The finding this one follows from; suppressing the cause suppresses this one too. */
  cause?: { line: number; rule: AnalyzerRule } | undefined;
}

/** A finding silenced by an inline `duckvisor: allow` comment. */
export interface SuppressedFinding extends Finding {
  reason: string;
  /** Line of the suppression comment. */
  suppressionLine: number;
}

/** A file that could not be parsed; reported with its position instead of crashing the run. */
export interface ParseError {
  file: string;
  line: number;
  column: number;
  message: string;
}

export type Language = 'typescript' | 'python';

/** Everything one lint run found, in a shape that is printed as text or as JSON. */
export interface LintReport {
  files: { typescript: number; python: number };
  findings: Finding[];
  suppressed: SuppressedFinding[];
  parseErrors: ParseError[];
}
