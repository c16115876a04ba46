// Inline suppressions: `# duckvisor: allow <rule>[, <rule>] -- <reason>` (Python) or
// `// duckvisor: allow <rule> -- <reason>` (TS/JS), on the finding's line or the line above it.
import type { Finding, Language, RawFinding, SuppressedFinding } from './types.js';

interface Suppression {
  line: number;
  column: number;
  rules: string[];
  reason: string | undefined;
}

const SUPPRESSION = /duckvisor:\s*allow\s+([\w-]+(?:\s*,\s*[\w-]+)*)(.*)$/;
const REASON = /^\s+--\s*(.*?)\s*(\*\/)?\s*$/;

/** Finds suppression comments in a file's text (comment syntax depends on the language). */
export function findSuppressions(text: string, language: Language): Suppression[] {
  const marker = language === 'python' ? '#' : '//';
  const found: Suppression[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    const at = line.indexOf('duckvisor:');
    if (at < 0) continue;
    const commentStart = line.lastIndexOf(marker, at);
    if (commentStart < 0) continue;
    const match = SUPPRESSION.exec(line.slice(at));
    if (!match) continue;
    const reasonText = REASON.exec(match[2]!)?.[1];
    found.push({
      line: index + 1,
      column: commentStart + 1,
      rules: match[1]!.split(',').map((rule) => rule.trim()),
      // `-- # note` or `-- // note` is another comment, not a reason
      reason: reasonText === undefined || reasonText === '' || /^(#|\/\/)/.test(reasonText) ? undefined : reasonText,
    });
  }
  return found;
}

export interface SuppressionResult {
  findings: Finding[];
  suppressed: SuppressedFinding[];
}

/**
 * Applies suppressions to one file's findings. A suppression covers its own line and the next line.
 * A suppression without a reason still silences its target but is itself reported
 * (`suppression-without-reason`), so the run fails until the reason is written down.
 */
export function applySuppressions(
  file: string,
  text: string,
  language: Language,
  raw: readonly RawFinding[],
): SuppressionResult {
  const suppressions = findSuppressions(text, language);
  const findings: Finding[] = [];
  const suppressed: SuppressedFinding[] = [];
  const coverOf = (line: number, rule: string): Suppression | undefined =>
    suppressions.find((s) => (s.line === line || s.line === line - 1) && s.rules.includes(rule));
  for (const { cause, ...finding } of raw) {
    const cover = coverOf(finding.line, finding.rule) ?? (cause === undefined ? undefined : coverOf(cause.line, cause.rule));
    if (cover === undefined) {
      findings.push({ file, ...finding });
    } else {
      suppressed.push({ file, ...finding, reason: cover.reason ?? '', suppressionLine: cover.line });
    }
  }
  for (const s of suppressions) {
    if (s.reason === undefined) {
      findings.push({
        file,
        line: s.line,
        column: s.column,
        rule: 'suppression-without-reason',
        message: `suppression of ${s.rules.join(', ')} gives no reason; write \`duckvisor: allow ${s.rules.join(', ')} -- <why this is bounded>\``,
      });
    }
  }
  findings.sort((a, b) => a.line - b.line || a.column - b.column || a.rule.localeCompare(b.rule));
  return { findings, suppressed };
}
