// MLflow run filter strings for the readers that have no server to evaluate them (file store, SQL
// store). Supported: clauses joined by AND (MLflow has no OR), each
//   params.<k> | tags.<k>        =, !=, LIKE, ILIKE, IS NULL, IS NOT NULL   ('string' values)
//   metrics.<k>                  =, !=, <, <=, >, >=                       (numbers)
//   attributes.<a>               status, run_name, run_id, user_id, lifecycle_stage, artifact_uri:
//                                =, !=, LIKE, ILIKE, IN ('a', 'b'), NOT IN;
//                                start_time, end_time: numeric comparators
// Prefix aliases as MLflow: param./parameters., tag., metric., attribute./attr./run.; keys with
// special characters in `backticks` or "double quotes". Dataset clauses are not supported (error).
import type { RunData, RunInfo } from './types.js';

type Comparator = '=' | '!=' | '<' | '<=' | '>' | '>=' | 'LIKE' | 'ILIKE' | 'IS NULL' | 'IS NOT NULL' | 'IN' | 'NOT IN';
type Entity = 'params' | 'tags' | 'metrics' | 'attributes';

interface Clause {
  entity: Entity;
  key: string;
  comparator: Comparator;
  value: string | number | string[] | null;
}

/** The parts of a run's data a filter clause can look at. */
export type FilterDataKind = 'params' | 'tags' | 'metrics';

export interface RunFilter {
  readonly text: string;
  /** True when a clause looks at params, tags or metrics (the reader must load the run's data). */
  readonly needsData: boolean;
  /** The parts of the run's data the clauses look at: a reader may load only these (the others may be left empty). */
  readonly dataKinds: ReadonlySet<FilterDataKind>;
  matches(run: RunInfo, data: RunData | undefined): boolean;
}

const PREFIXES: Record<string, Entity> = {
  params: 'params', param: 'params', parameters: 'params', parameter: 'params',
  tags: 'tags', tag: 'tags',
  metrics: 'metrics', metric: 'metrics',
  attributes: 'attributes', attribute: 'attributes', attr: 'attributes', run: 'attributes',
};
const STRING_ATTRIBUTES = new Set(['status', 'run_name', 'run_id', 'user_id', 'lifecycle_stage', 'artifact_uri']);
const NUMERIC_ATTRIBUTES = new Set(['start_time', 'end_time', 'created']);

class Scanner {
  pos = 0;
  constructor(readonly text: string) {}
  skipSpace(): void {
    while (this.pos < this.text.length && /\s/.test(this.text[this.pos]!)) this.pos++;
  }
  done(): boolean {
    this.skipSpace();
    return this.pos >= this.text.length;
  }
  fail(what: string): never {
    throw new Error(`filter ${JSON.stringify(this.text)}: ${what} at character ${this.pos + 1}`);
  }
  quoted(): string | undefined {
    this.skipSpace();
    const quote = this.text[this.pos];
    if (quote !== "'" && quote !== '"' && quote !== '`') return undefined;
    const end = this.text.indexOf(quote, this.pos + 1);
    if (end < 0) this.fail(`unterminated ${quote}`);
    const value = this.text.slice(this.pos + 1, end);
    this.pos = end + 1;
    return value;
  }
  match(pattern: RegExp): string | undefined {
    this.skipSpace();
    const found = pattern.exec(this.text.slice(this.pos));
    if (!found || found.index !== 0) return undefined;
    this.pos += found[0].length;
    return found[0];
  }
}

function parseClause(scanner: Scanner): Clause {
  const prefix = scanner.match(/^[A-Za-z]+(?=\.)/);
  if (prefix === undefined) scanner.fail('expected params.<key>, tags.<key>, metrics.<key> or attributes.<name>');
  const entity = PREFIXES[prefix.toLowerCase()];
  if (entity === undefined) scanner.fail(`unsupported prefix '${prefix}' (supported: params, tags, metrics, attributes)`);
  scanner.pos++; // the dot
  const key = scanner.quoted() ?? scanner.match(/^[\w./:-]+/);
  if (key === undefined || key === '') scanner.fail('expected a key name');
  const comparatorText = scanner.match(/^(IS\s+NOT\s+NULL|IS\s+NULL|NOT\s+IN|IN|ILIKE|LIKE|!=|<=|>=|=|<|>)/i);
  if (comparatorText === undefined) scanner.fail(`expected a comparator after ${prefix}.${key}`);
  const comparator = comparatorText.toUpperCase().replace(/\s+/g, ' ') as Comparator;
  let value: Clause['value'] = null;
  if (comparator === 'IN' || comparator === 'NOT IN') {
    if (scanner.match(/^\(/) === undefined) scanner.fail('expected ( after IN');
    const list: string[] = [];
    do {
      const item = scanner.quoted();
      if (item === undefined) scanner.fail('expected a quoted value in the IN list');
      list.push(item);
    } while (scanner.match(/^,/) !== undefined);
    if (scanner.match(/^\)/) === undefined) scanner.fail('expected )');
    value = list;
  } else if (comparator !== 'IS NULL' && comparator !== 'IS NOT NULL') {
    const quoted = scanner.quoted();
    if (quoted !== undefined) value = quoted;
    else {
      const number = scanner.match(/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/);
      if (number === undefined) scanner.fail('expected a quoted string or a number');
      value = Number(number);
    }
  }
  const attributeKey = key.toLowerCase();
  if (entity === 'attributes' && !STRING_ATTRIBUTES.has(attributeKey) && !NUMERIC_ATTRIBUTES.has(attributeKey)) {
    scanner.fail(`unsupported attribute '${key}' (supported: ${[...STRING_ATTRIBUTES, ...NUMERIC_ATTRIBUTES].join(', ')})`);
  }
  if (entity === 'metrics' && typeof value !== 'number') scanner.fail(`metrics.${key} compares with a number`);
  return { entity, key: entity === 'attributes' ? attributeKey : key, comparator, value };
}

function likeRegex(pattern: string, caseInsensitive: boolean): RegExp {
  const body = pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/%/g, '.*').replace(/_/g, '.');
  return new RegExp(`^${body}$`, caseInsensitive ? 'si' : 's');
}

function compareString(actual: string | null, clause: Clause): boolean {
  switch (clause.comparator) {
    case 'IS NULL':
      return actual === null;
    case 'IS NOT NULL':
      return actual !== null;
    case 'IN':
      return actual !== null && (clause.value as string[]).includes(actual);
    case 'NOT IN':
      return actual !== null && !(clause.value as string[]).includes(actual);
  }
  if (actual === null) return false;
  const expected = String(clause.value);
  switch (clause.comparator) {
    case '=':
      return actual === expected;
    case '!=':
      return actual !== expected;
    case 'LIKE':
      return likeRegex(expected, false).test(actual);
    case 'ILIKE':
      return likeRegex(expected, true).test(actual);
    default:
      throw new Error(`comparator ${clause.comparator} does not apply to strings`);
  }
}

function compareNumber(actual: number | null, clause: Clause): boolean {
  if (actual === null) return false;
  const expected = Number(clause.value);
  switch (clause.comparator) {
    case '=':
      return actual === expected;
    case '!=':
      return actual !== expected;
    case '<':
      return actual < expected;
    case '<=':
      return actual <= expected;
    case '>':
      return actual > expected;
    case '>=':
      return actual >= expected;
    default:
      throw new Error(`comparator ${clause.comparator} does not apply to numbers`);
  }
}

function attribute(run: RunInfo, key: string): string | number | null {
  switch (key) {
    case 'status':
      return run.status;
    case 'run_name':
      return run.runName;
    case 'run_id':
      return run.runId;
    case 'user_id':
      return run.userId;
    case 'lifecycle_stage':
      return run.lifecycleStage;
    case 'artifact_uri':
      return run.artifactUri;
    case 'start_time':
    case 'created':
      return run.startTime;
    case 'end_time':
      return run.endTime;
    default:
      return null;
  }
}

// Why: the file and SQL readers apply the same filter a tracking server would, so `filter` means one thing.
export function parseRunFilter(text: string): RunFilter {
  const scanner = new Scanner(text);
  const clauses: Clause[] = [];
  if (!scanner.done()) {
    clauses.push(parseClause(scanner));
    while (!scanner.done()) {
      if (scanner.match(/^AND\b/i) === undefined) scanner.fail("expected AND (MLflow filters have no OR)");
      clauses.push(parseClause(scanner));
    }
  }
  const dataKinds = new Set<FilterDataKind>();
  for (const clause of clauses) if (clause.entity !== 'attributes') dataKinds.add(clause.entity);
  return {
    text,
    needsData: dataKinds.size > 0,
    dataKinds,
    matches(run, data) {
      return clauses.every((clause) => {
        if (clause.entity === 'attributes') {
          const actual = attribute(run, clause.key);
          return NUMERIC_ATTRIBUTES.has(clause.key) ? compareNumber(actual as number | null, clause) : compareString(actual as string | null, clause);
        }
        if (data === undefined) throw new Error(`filter clause on ${clause.entity}.${clause.key} needs the run's data`);
        if (clause.entity === 'metrics') return compareNumber(data.latestMetrics.find((m) => m.key === clause.key)?.value ?? null, clause);
        const list = clause.entity === 'params' ? data.params : data.tags;
        return compareString(list.find((entry) => entry.key === clause.key)?.value ?? null, clause);
      });
    },
  };
}
