// Rules `unbounded-accumulation` and `bulk-write-after-loop` for TS/JS: a local collection created
// outside a loop, grown inside it and not cleared inside it; and the one-shot write that follows.
import ts from 'typescript';
import type { RuleContext } from './ts_context.js';
import { describeSource, type ProgressFacts } from './ts_progress.js';
import {
  callName,
  type CollectionEvent,
  descendants,
  identifiersIn,
  iteratesLiteral,
  type LoopNode,
  receiverVariable,
  rootVariable,
  type ScopeFacts,
  stringsIn,
} from './ts_syntax.js';

const GROWTH_METHODS = new Set(['push', 'unshift', 'set', 'concat']);
const SELF_WRITE_METHODS = new Set(['insertInto', 'writeTo', 'toSql', 'toParquet']);

/** Why: the incident's root cause — every row held in memory until one write at the end. */
export function checkAccumulation(context: RuleContext, scope: ScopeFacts, facts: ProgressFacts): void {
  const events = scope.events;
  const creations = events.filter((event) => event.kind === 'create');
  const reported = new Set<string>();
  for (const event of events) {
    if (event.kind !== 'grow') continue;
    const creation = latestBefore(creations, event);
    if (creation === undefined) continue;
    const growthLoops = event.loops.filter((loop) => !creation.loops.includes(loop) && !iteratesLiteral(loop));
    if (growthLoops.length === 0) continue;
    const innermost = growthLoops[growthLoops.length - 1]!;
    const key = `${creation.node.pos}:${growthLoops[0]!.pos}`;
    if (reported.has(key)) continue;
    const resets = events.filter(
      (other) => other.name === event.name && other !== creation && ['reset', 'create', 'rebind'].includes(other.kind),
    );
    if (resets.some((reset) => reset.loops.includes(innermost))) continue;
    const later = resets.filter((reset) => reset.node.getStart(context.sourceFile) >= innermost.end);
    const write = findBulkWrite(context, scope, event.name, innermost, later[0]);
    const extraction = growthLoops.some((loop) => describeSource(context, loop, facts) !== undefined);
    if (!extraction && write === undefined) continue; // an in-memory computation, not an extraction loop
    reported.add(key);
    const fate = later.length > 0 ? `only cleared after the loop (line ${context.lineOf(later[0]!.node)})` : 'never cleared';
    context.report(
      event.node,
      'unbounded-accumulation',
      `\`${event.name}\` (created at line ${context.lineOf(creation.node)}) grows inside the loop at line ${context.lineOf(innermost)} and is ${fate}; flush and clear it when it reaches a size threshold inside the loop`,
    );
    if (write !== undefined) {
      context.report(
        write,
        'bulk-write-after-loop',
        `writes \`${event.name}\`, accumulated by the loop at line ${context.lineOf(innermost)}, in one go after the loop; write in bounded batches inside the loop instead`,
        { line: context.lineOf(event.node), rule: 'unbounded-accumulation' },
      );
    }
  }
}

function latestBefore(creations: readonly CollectionEvent[], event: CollectionEvent): CollectionEvent | undefined {
  let found: CollectionEvent | undefined;
  for (const creation of creations) {
    if (creation.name === event.name && creation.node.pos < event.node.pos) found = creation;
  }
  return found;
}

/** The first call after `loop` that writes `name` (or something derived from it) in one go. */
function findBulkWrite(
  context: RuleContext,
  scope: ScopeFacts,
  name: string,
  loop: LoopNode,
  stop: CollectionEvent | undefined,
): ts.CallExpression | undefined {
  const stopAt = stop === undefined ? Number.POSITIVE_INFINITY : stop.node.pos;
  const after = descendants(scope.root).filter((node) => node.pos >= loop.end && node.pos < stopAt);
  const derived = new Set([name]);
  for (const node of after) {
    if (ts.isVariableDeclaration(node) && node.initializer !== undefined && intersects(identifiersIn(node.initializer), derived)) {
      for (const bound of identifiersIn(node.name)) derived.add(bound);
    }
    // `for (const row of rows)` (or rows.entries()/values()) walks the collection itself
    const iterated = ts.isForOfStatement(node) || ts.isForInStatement(node) ? rootVariable(node.expression) : undefined;
    if (iterated !== undefined && derived.has(iterated) && (ts.isForOfStatement(node) || ts.isForInStatement(node))) {
      for (const bound of identifiersIn(node.initializer)) derived.add(bound);
    }
  }
  for (const node of after) {
    if (!ts.isCallExpression(node)) continue;
    const called = callName(node);
    if (called === undefined) continue;
    const receiver = receiverVariable(node);
    if (GROWTH_METHODS.has(called.name) && receiver !== undefined && derived.has(receiver)) continue;
    const argumentNames = new Set<string>();
    for (const argument of node.arguments) for (const id of identifiersIn(argument)) argumentNames.add(id);
    const writesArgument = context.matchers.writes.matches(called.name, called.receiver) && intersects(argumentNames, derived);
    const writesSelf = receiver !== undefined && derived.has(receiver) && SELF_WRITE_METHODS.has(called.name);
    const sqlScan =
      ['run', 'exec', 'execute', 'query', 'sql'].includes(called.name) &&
      stringsIn(node).some(
        (sql) => /\b(insert|create\s+table|copy)\b/i.test(sql) && [...derived].some((d) => new RegExp(`\\b${d}\\b`).test(sql)),
      );
    if (writesArgument || writesSelf || sqlScan) return node;
  }
  return undefined;
}

function intersects(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  for (const item of a) if (b.has(item)) return true;
  return false;
}
