// MLflow's meta.yaml files, read without YAML 1.1/1.2 surprises: the failsafe schema keeps every
// scalar as its source text (a run named 1e3 stays "1e3", experiment ids stay strings); plain
// null/~/empty become null; only the keys MLflow writes as integers are turned into numbers.
import { readFile } from 'node:fs/promises';
import YAML, { isMap, isScalar, isSeq, Scalar } from 'yaml';
import { MlflowDataError } from './types.js';

export type MetaValue = string | null | MetaValue[] | { [key: string]: MetaValue };
export type Meta = Record<string, MetaValue>;

function toValue(node: unknown): MetaValue {
  if (isScalar(node)) {
    const text = node.value === null || node.value === undefined ? '' : String(node.value);
    if (node.type === Scalar.PLAIN && (text === '' || text === 'null' || text === '~' || text === 'Null' || text === 'NULL')) return null;
    return text;
  }
  if (isMap(node)) {
    const out: { [key: string]: MetaValue } = {};
    for (const pair of node.items) out[String(toValue(pair.key))] = toValue(pair.value);
    return out;
  }
  if (isSeq(node)) return node.items.map(toValue);
  return null;
}

// Why: one place decides how a meta.yaml becomes values, with errors that name the file.
export async function readMetaYaml(file: string, runId: string | undefined): Promise<Meta> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new MlflowDataError(runId, file, code === 'ENOENT' ? 'meta.yaml is missing' : `cannot read meta.yaml (${code ?? String(error)})`);
  }
  if (text.trim() === '') throw new MlflowDataError(runId, file, 'meta.yaml is empty (a writer was interrupted?)');
  const doc = YAML.parseDocument(text, { schema: 'failsafe', uniqueKeys: false });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const line = first.linePos?.[0]?.line;
    throw new MlflowDataError(runId, file, `garbled meta.yaml${line !== undefined ? ` (line ${line})` : ''}: ${first.message.split('\n')[0]}`);
  }
  const value = toValue(doc.contents);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new MlflowDataError(runId, file, 'garbled meta.yaml: expected a mapping of keys to values');
  }
  return value;
}

/** A string field (or null). Mappings/sequences where a scalar belongs are reported. */
export function metaString(meta: Meta, key: string, file: string, runId: string | undefined): string | null {
  const value = meta[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new MlflowDataError(runId, file, `field '${key}' should be a scalar`);
  return value;
}

/** An integer field written by MLflow as a plain int (times, status); null when absent. */
export function metaInteger(meta: Meta, key: string, file: string, runId: string | undefined): number | null {
  const text = metaString(meta, key, file, runId);
  if (text === null) return null;
  if (!/^-?\d+$/.test(text.trim())) throw new MlflowDataError(runId, file, `field '${key}' should be an integer, found ${JSON.stringify(text)}`);
  return Number(text);
}
