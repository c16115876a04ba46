// The file store's metric lines: "<timestamp_ms> <value> <step>", the pre-1.0 "<timestamp> <value>"
// and MLflow 3's "<timestamp> <value> <step> <dataset_name> <dataset_digest>". Python spells special
// values nan/inf/-inf, which parseFloat does not know, so they are mapped explicitly. Unlike MLflow's
// own reader, the step of a 5-field line is kept (as the official fs2db migrator does).
import type { MetricPoint } from './types.js';

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const INTEGER = /^-?\d+$/;
const SPECIAL: Readonly<Record<string, number>> = {
  nan: NaN, '-nan': NaN, inf: Infinity, '+inf': Infinity, '-inf': -Infinity, infinity: Infinity, '-infinity': -Infinity,
};

/** Parses a metric value as Python's str(float) writes it; undefined when it is not a number. */
export function parseMetricValue(text: string): number | undefined {
  if (NUMBER.test(text)) return Number(text);
  const special = SPECIAL[text.toLowerCase()];
  return special;
}

// Why: every metric line goes through one parser whose error says what is wrong with the line.
export function parseMetricLine(key: string, line: string): MetricPoint | string {
  const parts = line.trim().split(' ');
  if (parts.length < 2 || parts.length === 4) return `expected "<timestamp> <value> <step>", found ${parts.length} field(s): ${JSON.stringify(line.slice(0, 200))}`;
  const [timestampText, valueText, stepText] = parts as [string, string, string | undefined];
  if (!INTEGER.test(timestampText)) return `timestamp ${JSON.stringify(timestampText)} is not an integer`;
  const value = parseMetricValue(valueText);
  if (value === undefined) return `value ${JSON.stringify(valueText)} is not a number`;
  if (stepText !== undefined && !INTEGER.test(stepText)) return `step ${JSON.stringify(stepText)} is not an integer`;
  return { key, value, timestamp: Number(timestampText), step: stepText === undefined ? 0 : Number(stepText) };
}
