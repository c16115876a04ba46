// Printing a lint report: one `file:line:col rule message` line per finding plus a summary, or JSON.
import type { LintReport, RuleName } from './types.js';

function countByRule(items: readonly { rule: RuleName }[]): string {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item.rule, (counts.get(item.rule) ?? 0) + 1);
  return [...counts.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([rule, n]) => `${rule} ${n}`).join(', ');
}

/** The one-line summary printed last. */
export function summaryLine(report: LintReport): string {
  const fileCount = report.files.typescript + report.files.python;
  const parts = [
    `duckvisor lint: ${fileCount} file(s) (${report.files.typescript} TS/JS, ${report.files.python} Python)`,
    report.findings.length === 0 ? '0 findings' : `${report.findings.length} finding(s) (${countByRule(report.findings)})`,
    report.suppressed.length === 0 ? '0 suppressed' : `${report.suppressed.length} suppressed (${countByRule(report.suppressed)})`,
  ];
  if (report.parseErrors.length > 0) parts.push(`${report.parseErrors.length} file(s) could not be parsed`);
  return parts.join(', ');
}

/** Human-readable report: findings, parse errors, suppressions with their reasons, summary. */
export function formatText(report: LintReport): string {
  const lines: string[] = [];
  for (const error of report.parseErrors) {
    lines.push(`${error.file}:${error.line}:${error.column} parse-error ${error.message}`);
  }
  for (const finding of report.findings) {
    lines.push(`${finding.file}:${finding.line}:${finding.column} ${finding.rule} ${finding.message}`);
  }
  for (const item of report.suppressed) {
    lines.push(`  suppressed ${item.file}:${item.line} ${item.rule}${item.reason === '' ? '' : ` -- ${item.reason}`}`);
  }
  lines.push(summaryLine(report));
  return lines.join('\n') + '\n';
}

/** Machine-readable report (stable field names; see docs/lint.md). */
export function formatJson(report: LintReport, exitCode: number): string {
  return (
    JSON.stringify(
      {
        exitCode,
        files: report.files,
        findings: report.findings,
        suppressed: report.suppressed,
        parseErrors: report.parseErrors,
        summary: summaryLine(report),
      },
      null,
      2,
    ) + '\n'
  );
}

/** 2 when a file could not be parsed, 1 on findings, 0 when clean. */
export function exitCodeOf(report: LintReport): number {
  if (report.parseErrors.length > 0) return 2;
  return report.findings.length > 0 ? 1 : 0;
}
