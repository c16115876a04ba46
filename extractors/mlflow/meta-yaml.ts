// MLflow's meta.yaml files, read without YAML 1.1/1.2 surprises: the failsafe schema keeps every
// scalar as its source text (a run named 1e3 stays "1e3", experiment ids stay strings); plain
// null/~/empty become null; only the keys MLflow writes as integers are turned into numbers.
// The `yaml` package is loaded on first use: the file store parses MLflow's flat meta.yaml itself
// (file-store.ts parseFlatMeta), so most extractions never need it (its load cost ~30 ms at start).
import { readFile } from 'node:fs/promises';
import { MlflowDataError } from './types.js';

type YamlModule = typeof import('yaml');
let yamlModule: Promise<YamlModule> | undefined;

export type MetaValue = string | null | MetaValue[] | { [key: string]: MetaValue };
export type Meta = Record<string, MetaValue>;

function toValue(yaml: YamlModule, node: unknown): MetaValue {
  if (yaml.isScalar(node)) {
    const text = node.value === null || node.value === undefined ? '' : String(node.value);
    if (node.type === yaml.Scalar.PLAIN && (text === '' || text === 'null' || text === '~' || text === 'Null' || text === 'NULL')) return null;
    return text;
  }
  if (yaml.isMap(node)) {
    const out: { [key: string]: MetaValue } = {};
    for (const pair of node.items) out[String(toValue(yaml, pair.key))] = toValue(yaml, pair.value);
    return out;
  }
  if (yaml.isSeq(node)) return node.items.map((item) => toValue(yaml, item));
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
  yamlModule ??= import('yaml');
  const yaml = await yamlModule;
  const doc = yaml.parseDocument(text, { schema: 'failsafe', uniqueKeys: false });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const line = first.linePos?.[0]?.line;
    throw new MlflowDataError(runId, file, `garbled meta.yaml${line !== undefined ? ` (line ${line})` : ''}: ${first.message.split('\n')[0]}`);
  }
  const value = toValue(yaml, doc.contents);
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
