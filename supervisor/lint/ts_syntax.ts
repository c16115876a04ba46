// Syntax helpers for the TS/JS rules: call names, loops (including `.forEach` callbacks), scopes,
// and the per-scope walk that records how local collections are created, grown and cleared.
import ts from 'typescript';

/** `a.b.c(...)` → { name: 'c', receiver: 'b' }; `f(...)` → { name: 'f' }. */
export interface CallName {
  name: string;
  receiver: string | undefined;
}

/** Strips parentheses, `as`, `satisfies`, `!` and `<T>` casts. */
export function unwrap(node: ts.Expression): ts.Expression {
  let current = node;
  for (;;) {
    if (
      ts.isParenthesizedExpression(current) ||
      ts.isAsExpression(current) ||
      ts.isSatisfiesExpression(current) ||
      ts.isNonNullExpression(current) ||
      ts.isTypeAssertionExpression(current)
    ) {
      current = current.expression;
    } else {
      return current;
    }
  }
}

function lastSegment(node: ts.Expression): string {
  const inner = unwrap(node);
  if (ts.isIdentifier(inner) || ts.isPrivateIdentifier(inner)) return inner.text;
  if (ts.isPropertyAccessExpression(inner)) return inner.name.text;
  if (ts.isCallExpression(inner)) return callName(inner)?.name ?? '';
  if (inner.kind === ts.SyntaxKind.ThisKeyword) return 'this';
  if (ts.isAwaitExpression(inner)) return lastSegment(inner.expression);
  return '';
}

/** The called name and its receiver's last segment, or undefined for computed callees. */
export function callName(call: ts.CallExpression): CallName | undefined {
  const callee = unwrap(call.expression);
  if (ts.isIdentifier(callee)) return { name: callee.text, receiver: undefined };
  if (ts.isPropertyAccessExpression(callee)) return { name: callee.name.text, receiver: lastSegment(callee.expression) };
  return undefined;
}

/** The plain variable a method is called on: `rows.push(x)` → 'rows'. */
export function receiverVariable(call: ts.CallExpression): string | undefined {
  const callee = unwrap(call.expression);
  if (ts.isPropertyAccessExpression(callee)) {
    const target = unwrap(callee.expression);
    if (ts.isIdentifier(target)) return target.text;
  }
  return undefined;
}

/** The variable at the root of `rows[k]`, `(m[k] ??= [])`, `m.get(k)!`, `rows`: the collection touched. */
export function rootVariable(node: ts.Expression): string | undefined {
  let current = unwrap(node);
  for (;;) {
    if (ts.isIdentifier(current)) return current.text;
    if (ts.isElementAccessExpression(current) || ts.isPropertyAccessExpression(current)) current = unwrap(current.expression);
    else if (ts.isCallExpression(current)) current = unwrap(current.expression);
    else if (ts.isBinaryExpression(current)) current = unwrap(current.left);
    else return undefined;
  }
}

/** `[]`, `{}`, `new Map()`, `new Array()`, `Object.create(null)`. */
export function isEmptyCollection(node: ts.Expression): boolean {
  const expr = unwrap(node);
  if (ts.isArrayLiteralExpression(expr)) return expr.elements.length === 0;
  if (ts.isObjectLiteralExpression(expr)) return expr.properties.length === 0;
  if (ts.isNewExpression(expr) && ts.isIdentifier(expr.expression)) {
    return ['Map', 'Array'].includes(expr.expression.text) && (expr.arguments === undefined || expr.arguments.length === 0);
  }
  if (ts.isCallExpression(expr)) {
    const called = callName(expr);
    return called?.name === 'create' && called.receiver === 'Object';
  }
  return false;
}

/** Identifiers used anywhere under `node` (by text). */
export function identifiersIn(node: ts.Node): Set<string> {
  const names = new Set<string>();
  const visit = (child: ts.Node): void => {
    if (ts.isIdentifier(child)) names.add(child.text);
    ts.forEachChild(child, visit);
  };
  visit(node);
  return names;
}

/** String literal and template texts under `node`. */
export function stringsIn(node: ts.Node): string[] {
  const texts: string[] = [];
  const visit = (child: ts.Node): void => {
    if (ts.isStringLiteral(child) || ts.isNoSubstitutionTemplateLiteral(child)) texts.push(child.text);
    else if (ts.isTemplateExpression(child)) {
      texts.push(child.head.text, ...child.templateSpans.map((span) => span.literal.text));
    }
    ts.forEachChild(child, visit);
  };
  visit(node);
  return texts;
}

/** Every node under `root` (root included), depth first in source order. */
export function descendants(root: ts.Node): ts.Node[] {
  const all: ts.Node[] = [];
  const visit = (child: ts.Node): void => {
    all.push(child);
    ts.forEachChild(child, visit);
  };
  visit(root);
  return all;
}

const ITERATION_METHODS = new Set(['forEach', 'map', 'flatMap', 'filter', 'reduce', 'some', 'every', 'find']);

function inlineCallback(node: ts.Node): node is ts.ArrowFunction | ts.FunctionExpression {
  return ts.isArrowFunction(node) || ts.isFunctionExpression(node);
}

/** A loop: a statement loop, or `xs.forEach(cb)`-style iteration with an inline callback. */
export type LoopNode =
  | ts.ForStatement
  | ts.ForOfStatement
  | ts.ForInStatement
  | ts.WhileStatement
  | ts.DoStatement
  | ts.CallExpression;

/** Whether `node` is a loop; iteration-method calls count when their callback is written inline. */
export function isLoop(node: ts.Node): node is LoopNode {
  if (
    ts.isForStatement(node) ||
    ts.isForOfStatement(node) ||
    ts.isForInStatement(node) ||
    ts.isWhileStatement(node) ||
    ts.isDoStatement(node)
  ) {
    return true;
  }
  if (ts.isCallExpression(node)) {
    const called = callName(node);
    return (
      called !== undefined &&
      called.receiver !== undefined &&
      ITERATION_METHODS.has(called.name) &&
      node.arguments.length > 0 &&
      inlineCallback(node.arguments[0]!)
    );
  }
  return false;
}

/** The expression a loop iterates over (for-of/in and iteration methods), if any. */
export function loopIterable(loop: LoopNode): ts.Expression | undefined {
  if (ts.isForOfStatement(loop) || ts.isForInStatement(loop)) return loop.expression;
  if (ts.isCallExpression(loop)) {
    const callee = unwrap(loop.expression);
    return ts.isPropertyAccessExpression(callee) ? callee.expression : undefined;
  }
  return undefined;
}

/** The parts of a loop that run every iteration (body, callback, condition, incrementor). */
export function loopBodyParts(loop: LoopNode): ts.Node[] {
  if (ts.isCallExpression(loop)) return [loop.arguments[0]!];
  if (ts.isForStatement(loop)) {
    const parts: (ts.Node | undefined)[] = [loop.condition, loop.incrementor, loop.statement];
    return parts.filter((part): part is ts.Node => part !== undefined);
  }
  if (ts.isWhileStatement(loop) || ts.isDoStatement(loop)) return [loop.expression, loop.statement];
  return [loop.statement];
}

/** A loop over a literal (`for (const k of ['a', 'b'])`) has a fixed, visible size. */
export function iteratesLiteral(loop: LoopNode): boolean {
  const iterable = loopIterable(loop);
  if (iterable === undefined) return false;
  const expr = unwrap(iterable);
  return ts.isArrayLiteralExpression(expr) && expr.elements.every((e) => !ts.isSpreadElement(e));
}

/** Function-like nodes start a new scope unless they are an inline callback argument of a call. */
export function startsScope(node: ts.Node): boolean {
  if (!ts.isFunctionLike(node)) return false;
  if (inlineCallback(node) && node.parent !== undefined && ts.isCallExpression(node.parent)) {
    return !node.parent.arguments.includes(node as ts.Expression);
  }
  return true;
}

export type CollectionEventKind = 'create' | 'grow' | 'reset' | 'rebind';

/** Something that happened to a local collection variable, with the loops around it. */
export interface CollectionEvent {
  kind: CollectionEventKind;
  name: string;
  node: ts.Node;
  loops: readonly LoopNode[];
}

/** What one scope (a function body, or the file's top level) contains. */
export interface ScopeFacts {
  root: ts.Node;
  events: CollectionEvent[];
  loops: LoopNode[];
  /** Loop stack of each loop (the loops enclosing it within this scope). */
  enclosing: Map<LoopNode, readonly LoopNode[]>;
}

function isSelfGrowth(name: string, value: ts.Expression): boolean {
  const expr = unwrap(value);
  if (ts.isCallExpression(expr)) {
    const called = callName(expr);
    return called?.name === 'concat' && identifiersIn(expr).has(name);
  }
  if (ts.isArrayLiteralExpression(expr) || ts.isObjectLiteralExpression(expr)) {
    return identifiersIn(expr).has(name);
  }
  return false;
}

function recordEvent(node: ts.Node, loops: readonly LoopNode[], events: CollectionEvent[]): void {
  const add = (kind: CollectionEventKind, name: string | undefined): void => {
    if (name !== undefined) events.push({ kind, name, node, loops });
  };
  if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer !== undefined) {
    if (isEmptyCollection(node.initializer)) add('create', node.name.text);
    return;
  }
  if (ts.isBinaryExpression(node)) {
    const operator = node.operatorToken.kind;
    const left = unwrap(node.left);
    if (operator === ts.SyntaxKind.EqualsToken && ts.isIdentifier(left)) {
      if (isEmptyCollection(node.right)) add('create', left.text);
      else if (isSelfGrowth(left.text, node.right)) add('grow', left.text);
      else if (!identifiersIn(node.right).has(left.text)) add('rebind', left.text);
      return;
    }
    if (
      operator === ts.SyntaxKind.EqualsToken &&
      ts.isPropertyAccessExpression(left) &&
      left.name.text === 'length' &&
      ts.isNumericLiteral(unwrap(node.right)) &&
      (unwrap(node.right) as ts.NumericLiteral).text === '0'
    ) {
      add('reset', rootVariable(left.expression));
      return;
    }
    const assigning =
      operator === ts.SyntaxKind.EqualsToken ||
      operator === ts.SyntaxKind.QuestionQuestionEqualsToken ||
      operator === ts.SyntaxKind.BarBarEqualsToken;
    if (assigning && ts.isElementAccessExpression(left)) {
      const root = rootVariable(left.expression);
      // `totals[k] = (totals[k] ?? 0) + v` aggregates per key: bounded by distinct keys, not by rows
      const aggregates = root !== undefined && descendants(node.right).some((inner) => ts.isElementAccessExpression(inner) && rootVariable(inner.expression) === root);
      if (!aggregates) add('grow', root);
    }
    return;
  }
  if (ts.isCallExpression(node)) {
    const called = callName(node);
    if (called === undefined) return;
    const callee = unwrap(node.expression);
    if (called.name === 'assign' && called.receiver === 'Object' && node.arguments.length > 1) {
      add('grow', rootVariable(node.arguments[0]!));
      return;
    }
    if (!ts.isPropertyAccessExpression(callee)) return;
    const target = unwrap(callee.expression);
    if (['push', 'unshift'].includes(called.name)) {
      add('grow', rootVariable(target));
    } else if (called.name === 'set' && ts.isIdentifier(target) && node.arguments.length === 2) {
      add('grow', target.text);
    } else if (called.name === 'clear' && ts.isIdentifier(target)) {
      add('reset', target.text);
    } else if (called.name === 'splice' && ts.isIdentifier(target)) {
      const first = node.arguments[0];
      if (first !== undefined && ts.isNumericLiteral(first) && first.text === '0' && node.arguments.length <= 2) {
        add('reset', target.text);
      }
    }
  }
}

/** Splits a file into scopes and records every collection event and loop in each. */
export function collectScopes(sourceFile: ts.SourceFile): ScopeFacts[] {
  const scopes: ScopeFacts[] = [];
  const pending: ts.Node[] = [sourceFile];
  while (pending.length > 0) {
    const root = pending.pop()!;
    const facts: ScopeFacts = { root, events: [], loops: [], enclosing: new Map() };
    const visit = (node: ts.Node, loops: readonly LoopNode[]): void => {
      if (node !== root && startsScope(node)) {
        pending.push(node);
        return;
      }
      recordEvent(node, loops, facts.events);
      if (isLoop(node)) {
        facts.loops.push(node);
        facts.enclosing.set(node, loops);
        const inner = [...loops, node];
        const bodyParts = new Set<ts.Node>(loopBodyParts(node));
        ts.forEachChild(node, (child) => visit(child, bodyParts.has(child) ? inner : loops));
        return;
      }
      ts.forEachChild(node, (child) => visit(child, loops));
    };
    if (root === sourceFile) ts.forEachChild(root, (child) => visit(child, []));
    else visit(root, []);
    scopes.push(facts);
  }
  return scopes;
}
