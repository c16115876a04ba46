// Rule `no-progress-in-loop` for TS/JS: a loop over an extraction source (MLflow, DB cursor, file
// listing) must report progress inside it, or the supervisor cannot tell work from a stall.
import ts from 'typescript';
import type { RuleContext } from './ts_context.js';
import { callName, descendants, isLoop, type LoopNode, loopBodyParts, loopIterable, type ScopeFacts, startsScope, stringsIn } from './ts_syntax.js';

/** Facts about a whole file that the per-scope check needs. */
export interface ProgressFacts {
  /** Local functions/methods whose bodies report progress (calling them counts as progress). */
  progressFunctions: ReadonlySet<string>;
  /** Variables bound to a source call: `const runs = client.searchRuns(...)`. */
  sourceVariables: ReadonlySet<string>;
  /** Local functions called from a loop that reports progress: their own loops are covered by it. */
  coveredFunctions: ReadonlySet<string>;
  /** Sorted start positions of the file's progress calls (including calls of progress functions). */
  progressCallStarts: readonly number[];
}

function isSourceCall(context: RuleContext, node: ts.Node): node is ts.CallExpression {
  if (!ts.isCallExpression(node)) return false;
  const called = callName(node);
  return called !== undefined && context.matchers.sources.matches(called.name, called.receiver);
}

function isProgressCall(context: RuleContext, node: ts.Node, progressFunctions: ReadonlySet<string>): boolean {
  if (!ts.isCallExpression(node)) return false;
  const called = callName(node);
  if (called !== undefined && (context.matchers.progress.matches(called.name, called.receiver) || progressFunctions.has(called.name))) {
    return true;
  }
  const markers = context.matchers.markers;
  return node.arguments.some((argument) => stringsIn(argument).some((text) => markers.some((marker) => text.includes(marker))));
}

/** Start positions (sorted) of every progress call in the file, so "does X contain one" is a range query. */
function progressCallStarts(calls: readonly ts.CallExpression[], context: RuleContext, progressFunctions: ReadonlySet<string>): number[] {
  return calls.filter((call) => isProgressCall(context, call, progressFunctions)).map((call) => call.pos);
}

function anyWithin(sortedStarts: readonly number[], node: ts.Node): boolean {
  let low = 0;
  let high = sortedStarts.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sortedStarts[middle]! < node.pos) low = middle + 1;
    else high = middle;
  }
  return low < sortedStarts.length && sortedStarts[low]! < node.end;
}

function containsProgress(facts: Pick<ProgressFacts, 'progressCallStarts'>, root: ts.Node): boolean {
  return anyWithin(facts.progressCallStarts, root);
}

function functionName(node: ts.Node): string | undefined {
  if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node)) && node.name !== undefined && ts.isIdentifier(node.name)) {
    return node.name.text;
  }
  if ((ts.isArrowFunction(node) || ts.isFunctionExpression(node)) && ts.isVariableDeclaration(node.parent) && ts.isIdentifier(node.parent.name)) {
    return node.parent.name.text;
  }
  return undefined;
}

/** Why: computed once per file — which local functions report progress, which variables hold sources. */
export function collectProgressFacts(context: RuleContext): ProgressFacts {
  const all = descendants(context.sourceFile);
  const calls = all.filter((node): node is ts.CallExpression => ts.isCallExpression(node));
  const functions = all.filter((node) => ts.isFunctionLike(node) && functionName(node) !== undefined);
  const progressFunctions = new Set<string>();
  let starts = progressCallStarts(calls, context, progressFunctions);
  for (let changed = true; changed; ) {
    changed = false;
    for (const fn of functions) {
      const name = functionName(fn)!;
      if (!progressFunctions.has(name) && anyWithin(starts, fn)) {
        progressFunctions.add(name);
        changed = true;
      }
    }
    if (changed) starts = progressCallStarts(calls, context, progressFunctions);
  }
  const sourceVariables = new Set<string>();
  for (const node of all) {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer !== undefined) {
      if (descendants(node.initializer).some((inner) => isSourceCall(context, inner))) sourceVariables.add(node.name.text);
    }
  }
  const coveredFunctions = new Set<string>();
  const progressLoops = all.filter((node) => isLoop(node) && loopBodyParts(node).some((part) => anyWithin(starts, part)));
  for (const call of calls) {
    if (!progressLoops.some((loop) => call.pos >= loop.pos && call.end <= loop.end)) continue;
    const called = callName(call);
    if (called !== undefined) coveredFunctions.add(called.name);
  }
  return { progressFunctions, sourceVariables, coveredFunctions, progressCallStarts: starts };
}

/** Why: shared with the accumulation rule — what extraction source a loop iterates, if any. */
export function describeSource(context: RuleContext, loop: LoopNode, facts: ProgressFacts): string | undefined {
  const iterable = loopIterable(loop);
  if (iterable !== undefined) {
    for (const node of descendants(iterable)) {
      if (isSourceCall(context, node)) return `${context.text(node.expression)}(...)`;
      if (ts.isIdentifier(node) && facts.sourceVariables.has(node.text)) return node.text;
    }
    return undefined;
  }
  // while/do/for(;;): a source call in the condition or directly in the body (not in nested loops)
  const shallow: ts.Node[] = [];
  const visit = (node: ts.Node): void => {
    shallow.push(node);
    ts.forEachChild(node, (child) => {
      if (!isLoop(child) && !startsScope(child)) visit(child);
    });
  };
  for (const part of loopBodyParts(loop)) visit(part);
  if (ts.isForStatement(loop) && loop.initializer !== undefined) visit(loop.initializer);
  const source = shallow.find((node) => isSourceCall(context, node));
  return source === undefined ? undefined : `${context.text((source as ts.CallExpression).expression)}(...)`;
}

/** Why: a loop over a large source without progress is what ran 24 hours unnoticed. */
export function checkProgress(context: RuleContext, scope: ScopeFacts, facts: ProgressFacts): void {
  const scopeName = functionName(scope.root);
  if (scopeName !== undefined && facts.coveredFunctions.has(scopeName)) return;
  const reported = new Set<LoopNode>();
  for (const loop of scope.loops) {
    const source = describeSource(context, loop, facts);
    if (source === undefined) continue;
    const enclosing = scope.enclosing.get(loop) ?? [];
    if (enclosing.some((outer) => reported.has(outer))) continue; // one finding per nest
    if (containsProgress(facts, loop)) continue;
    if (enclosing.some((outer) => loopBodyParts(outer).some((part) => containsProgress(facts, part)))) continue;
    reported.add(loop);
    context.report(
      loop,
      'no-progress-in-loop',
      `loop over \`${source}\` reports no progress; call ctx.progress()/a heartbeat inside it so a stall is visible`,
    );
  }
}
