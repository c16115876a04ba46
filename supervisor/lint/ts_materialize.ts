// Rule `materialize-all` for TS/JS: reading a whole source into memory where a streaming API exists
// (whole-artifact reads, Array.from/spread/fromAsync of run iterators, `.all()`/`runAndReadAll`).
import ts from 'typescript';
import type { RuleContext } from './ts_context.js';
import { callName, descendants, isLoop, loopIterable, stringsIn, unwrap } from './ts_syntax.js';

/** Queries whose full result is small by construction (counts, LIMIT n, catalog lookups). */
export const CHEAP_QUERY =
  /\blimit\s+\d+|^\s*select\s+(count|sum|min|max|avg|coalesce\s*\(\s*sum)\s*\((?![^;]*\bgroup\s+by\b)|sqlite_master|information_schema|^\s*pragma\b|duckdb_\w+\s*\(/i;

const RUN_ITERATOR_NAME = /runs|experiments|metric|histor|artifacts|rows|iterate|search/i;
const WHOLE_FILE_READS = new Set(['readFileSync', 'readFile']);
// DuckDB's runAndReadAll is the everyday query call (scalars, catalog lookups), so it is not listed.
const WHOLE_RESULT_CALLS = new Set(['fetchall', 'fetchAll']);

function producesRuns(context: RuleContext, expression: ts.Expression): boolean {
  let expr = unwrap(expression);
  if (ts.isAwaitExpression(expr)) expr = unwrap(expr.expression);
  if (!ts.isCallExpression(expr)) return false;
  const called = callName(expr);
  if (called === undefined) return false;
  return RUN_ITERATOR_NAME.test(called.name) || context.matchers.sources.matches(called.name, called.receiver);
}

function cheap(node: ts.Node): boolean {
  return stringsIn(node).some((sql) => CHEAP_QUERY.test(sql));
}

/** Why: a streaming reader exists for each of these; reading everything is how memory runs away. */
export function checkMaterialize(context: RuleContext): void {
  const all = descendants(context.sourceFile);
  const artifactLoops = all.filter((node) => {
    if (!isLoop(node)) return false;
    const iterable = loopIterable(node);
    return iterable !== undefined && /artifact/i.test(context.text(iterable));
  });
  const inArtifactLoop = (node: ts.Node): boolean => artifactLoops.some((loop) => node.pos >= loop.pos && node.end <= loop.end);
  for (const node of all) {
    if (ts.isSpreadElement(node) && ts.isArrayLiteralExpression(node.parent) && producesRuns(context, node.expression)) {
      context.report(node, 'materialize-all', `[...${context.text(node.expression)}] collects a whole source into an array; iterate it with for await/for...of instead`);
      continue;
    }
    if (!ts.isCallExpression(node)) continue;
    const called = callName(node);
    if (called === undefined) continue;
    const first = node.arguments[0];
    if (called.receiver === 'Array' && (called.name === 'from' || called.name === 'fromAsync') && first !== undefined) {
      const runsLike = producesRuns(context, first) || (called.name === 'fromAsync' && /run|experiment|metric|artifact/i.test(context.text(first)));
      if (runsLike) {
        context.report(node, 'materialize-all', `Array.${called.name}(${context.text(first)}) collects a whole source into an array; iterate it with for await/for...of instead`);
      }
    } else if (WHOLE_FILE_READS.has(called.name) && first !== undefined) {
      if (/artifact/i.test(node.arguments.map((a) => context.text(a)).join(' ')) || inArtifactLoop(node)) {
        context.report(node, 'materialize-all', `${called.name} reads a whole artifact into memory; stream it (fs.createReadStream, readline, chunked reads)`);
      }
    } else if (called.name === 'all' && called.receiver !== undefined && /stmt|statement|query|prepare/i.test(called.receiver)) {
      const callee = unwrap(node.expression);
      const statement = ts.isPropertyAccessExpression(callee) ? callee.expression : node;
      if (!cheap(statement)) {
        context.report(node, 'materialize-all', `.all() loads every row of the query; use .iterate() and stream`);
      }
    } else if (WHOLE_RESULT_CALLS.has(called.name) && !cheap(node) && !cheap(node.expression)) {
      context.report(node, 'materialize-all', `${called.name}() loads the whole result into memory; stream it in chunks`);
    }
  }
}
