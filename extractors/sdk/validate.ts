// Output validation: the check the original scripts lacked ("all scripts validate output before
// declaring success"). An extractor states what it expects with ctx.expect(); at the end the SDK
// compares it with what the staging database really holds (all attempts together) and refuses to
// declare `ready` when it does not match.
import type { Expectation } from './api.js';
import type { ReadyMessage } from './protocol.js';

export type ValidationReport = ReadyMessage['validation'];

export interface StagingFacts {
  /** Units committed in staging, all attempts. */
  units: number;
  /** Units skipped as bad input by this attempt. */
  skipped: number;
  /** Rows per output table in staging. */
  tableRows: Record<string, number>;
}

// Why: catch a bad expectation when it is stated, not after hours of extraction.
export function checkExpectation(expectation: Expectation): Expectation {
  const problems: string[] = [];
  if (expectation.units !== undefined && (!Number.isInteger(expectation.units) || expectation.units < 0)) {
    problems.push(`units must be a non-negative integer (got ${JSON.stringify(expectation.units)})`);
  }
  if (expectation.tolerance !== undefined && !(expectation.tolerance >= 0 && expectation.tolerance <= 1)) {
    problems.push(`tolerance must be between 0 and 1, e.g. 0.05 for ±5% (got ${JSON.stringify(expectation.tolerance)})`);
  }
  for (const [table, perUnit] of Object.entries(expectation.rowsPerUnit ?? {})) {
    if (typeof perUnit !== 'number' || !(perUnit >= 0)) problems.push(`rowsPerUnit.${table} must be a non-negative number (got ${JSON.stringify(perUnit)})`);
  }
  if (problems.length > 0) throw new Error(`ctx.expect(): ${problems.join('; ')}`);
  return expectation;
}

function within(actual: number, expected: number, tolerance: number): boolean {
  return Math.abs(actual - expected) <= tolerance * expected + 1e-9;
}

function percent(tolerance: number): string {
  return tolerance > 0 ? ` ±${+(tolerance * 100).toFixed(2)}%` : '';
}

// Why: one pure function turns expectation + facts into the report sent in `ready`.
export function validate(expectation: Expectation | undefined, facts: StagingFacts): ValidationReport {
  if (expectation === undefined) return { ok: true, units: facts.units, problems: [] };
  const tolerance = expectation.tolerance ?? 0;
  const problems: string[] = [];
  let expectedUnits: number | undefined;
  if (expectation.units !== undefined) {
    expectedUnits = Math.max(0, expectation.units - facts.skipped);
    if (!within(facts.units, expectedUnits, tolerance)) {
      const skippedNote = facts.skipped > 0 ? ` (${expectation.units} declared − ${facts.skipped} skipped)` : '';
      problems.push(`units: expected ${expectedUnits}${skippedNote}${percent(tolerance)}, got ${facts.units}`);
    }
  }
  for (const [table, perUnit] of Object.entries(expectation.rowsPerUnit ?? {})) {
    const rows = facts.tableRows[table];
    if (rows === undefined) {
      problems.push(`table '${table}': expected ${perUnit} rows per unit, but the extractor wrote no such table`);
      continue;
    }
    const actual = facts.units === 0 ? 0 : rows / facts.units;
    if (!within(actual, perUnit, tolerance)) {
      problems.push(
        `table '${table}': expected ${perUnit} rows per unit${percent(tolerance)}, got ${+actual.toFixed(3)} (${rows} rows over ${facts.units} units)`,
      );
    }
  }
  return {
    ok: problems.length === 0,
    units: facts.units,
    ...(expectedUnits === undefined ? {} : { expected_units: expectedUnits }),
    problems,
  };
}

// Why: the error text that fails a run whose output does not match its expectation.
export function validationFailureMessage(report: ValidationReport): string {
  return `output validation failed (expected vs actual):\n  - ${report.problems.join('\n  - ')}`;
}
