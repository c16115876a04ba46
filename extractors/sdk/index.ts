// The extractor SDK's entry points: defineExtractor() (what an extractor module default-exports)
// and runExtractor() (what the child process runs: environment → staging → main → validate → ready).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { ZodType } from 'zod';
import type { ExtractorLog, ExtractorMain, ExtractorPrepare } from './api.js';
import { openChannel, type Channel } from './channel.js';
import { UnitLedger } from './checkpoint.js';
import { channelLog, createContext, StagingSession } from './context.js';
import { duckdbSettings, keepYoungGenerationSmall, parseRssLimit, MEMORY_TRACE_ENV, SMALL_STAGING, STAGING_WRITER_MEMORY_BYTES, startHeapTrim, startMemorySelfCheck, startMemoryTrace, type MemorySelfCheck } from './limits.js';
import { parseSize } from '../../supervisor/units.js';
import { childEnv } from './protocol.js';
import { parseBatchRows } from './table.js';
import { validate, validationFailureMessage } from './validate.js';

export type * from './api.js';

const extractorBrand = Symbol.for('duckvisor.extractor');

/** What an extractor module default-exports. */
export interface Extractor<Options = Record<string, unknown>, Prepared = unknown> {
  readonly name: string;
  // A method signature: an extractor with its own Prepared type is still an Extractor<Options>.
  main(ctx: Parameters<ExtractorMain<Options, Prepared>>[0], prepared: Prepared): Promise<void>;
  readonly optionsSchema: ZodType<Options> | undefined;
  prepare?(options: Options, log: ExtractorLog): Prepared;
  /** 'small': narrow tables and few rows per unit, written with small DuckDB blocks and buffers (limits.ts SMALL_STAGING). */
  readonly staging?: StagingProfile;
}

/** How an extractor writes its staging database: 'bulk' (the default) or 'small' (see SMALL_STAGING). */
export type StagingProfile = 'bulk' | 'small';

/** Exit codes of an extractor child. `stopped`: the supervisor asked for a stop; committed units are kept for a resume. */
// `validation` is EX_DATAERR: the supervisor records such a run as failed/validation and does not
// retry it as a crash (the same input would fail the same way).
export const exitCodes = { ok: 0, failed: 1, stopped: 3, validation: 65 } as const;

/** Default heartbeat_timeout when the extractor runs by hand. */
const DEFAULT_HEARTBEAT_TIMEOUT_MS = 30_000;

// Why: extractor modules declare themselves with this, so the runner can find and check them.
export function defineExtractor<Options = Record<string, unknown>, Prepared = undefined>(
  name: string,
  main: ExtractorMain<Options, Prepared>,
  opts?: { optionsSchema?: ZodType<Options>; prepare?: ExtractorPrepare<Options, Prepared>; staging?: StagingProfile },
): Extractor<Options, Prepared> {
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/.test(name)) {
    throw new TypeError(`defineExtractor(name, main): name must be 1-200 letters, digits, '_', '.' or '-' (got ${JSON.stringify(name)})`);
  }
  if (typeof main !== 'function') throw new TypeError(`defineExtractor('${name}', main): main must be an async function (ctx) => {...}`);
  if (opts?.prepare !== undefined && typeof opts.prepare !== 'function') throw new TypeError(`defineExtractor('${name}', main, { prepare }): prepare must be a function (options, log) => …`);
  if (opts?.staging !== undefined && opts.staging !== 'bulk' && opts.staging !== 'small') throw new TypeError(`defineExtractor('${name}', main, { staging }): staging must be 'bulk' or 'small'`);
  const extractor = { name, main, optionsSchema: opts?.optionsSchema, ...(opts?.prepare !== undefined ? { prepare: opts.prepare } : {}), ...(opts?.staging !== undefined ? { staging: opts.staging } : {}) };
  Object.defineProperty(extractor, extractorBrand, { value: true });
  return Object.freeze(extractor);
}

// Why: a user module's default export is checked before anything is run, with an error that says what is wrong.
export function isExtractor(value: unknown): value is Extractor<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    ((value as Record<symbol, unknown>)[extractorBrand] === true ||
      (typeof (value as { name?: unknown }).name === 'string' && typeof (value as { main?: unknown }).main === 'function'))
  );
}

/** A failure whose message says everything (bad options, failed validation, memory): printed without a stack. */
class UsageError extends Error {
  override name = 'UsageError';
}

/** The output did not meet ctx.expect(); exit code `validation`. */
class ValidationFailed extends UsageError {
  override name = 'ValidationFailed';
}

/** SIGTERM/SIGINT ended the run: the supervisor's stop after its grace, or a limit kill. Exit code `stopped`. */
class StoppedBySignal extends Error {
  override name = 'StoppedBySignal';
  constructor(readonly signal: NodeJS.Signals) {
    super(`stopped by ${signal}: rows not yet committed were discarded; committed units are kept for a resume`);
  }
}

/** A run-ending failure raised outside the extractor's own call chain (memory self-check, a signal). */
interface Interruption {
  /** Rejects with the first failure; raced against every step of the run. */
  readonly promise: Promise<never>;
  readonly failure: Error | undefined;
  fail(error: Error): void;
}

function createInterruption(): Interruption {
  let reject!: (error: Error) => void;
  let failure: Error | undefined;
  const promise = new Promise<never>((_, rejectWith) => {
    reject = rejectWith;
  });
  promise.catch(() => undefined);
  return {
    promise,
    get failure() {
      return failure;
    },
    fail(error) {
      failure ??= error;
      reject(error);
    },
  };
}

function readOptions(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const raw = env[childEnv.options];
  if (raw === undefined || raw.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    throw new UsageError(`${childEnv.options} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`${childEnv.options} must be a JSON object of the job's options (got ${Array.isArray(parsed) ? 'an array' : typeof parsed})`);
  }
  return parsed as Record<string, unknown>;
}

function parseOptions<Options>(extractor: Extractor<Options>, raw: Record<string, unknown>): Options {
  if (extractor.optionsSchema === undefined) return raw as Options;
  const result = extractor.optionsSchema.safeParse(raw);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => `options.${issue.path.join('.') || '(root)'}: ${issue.message}`);
  throw new UsageError(`invalid options for extractor '${extractor.name}':\n  - ${issues.join('\n  - ')}`);
}

/** Job option `duckdb_memory` ("256MiB" or bytes): DuckDB's memory_limit, overriding min(50% of limits.rss, 16 MiB; 8 MiB for staging: 'small'). */
function parseDuckdbMemory(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const bytes = typeof value === 'number' || typeof value === 'string' ? parseSize(value) : undefined;
  if (bytes === undefined || bytes <= 0) throw new UsageError(`option 'duckdb_memory' must be a size such as "256MiB" (got ${JSON.stringify(value)})`);
  return bytes;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

function positiveNumber(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`${name} must be a positive number (got ${JSON.stringify(raw)})`);
  return value;
}

function stagingPath(extractor: Extractor<unknown>, env: NodeJS.ProcessEnv, channel: Channel): string {
  const configured = env[childEnv.staging];
  if (configured !== undefined && configured !== '') return path.resolve(configured);
  const fallback = path.resolve(`${extractor.name}.staging.duckdb`);
  channel.log('info', `${childEnv.staging} is not set; writing staging to ${fallback}`);
  return fallback;
}

async function execute<Options>(extractor: Extractor<Options>, channel: Channel, env: NodeJS.ProcessEnv, interruption: Interruption): Promise<number> {
  const rawOptions = readOptions(env);
  const options = parseOptions(extractor, rawOptions);
  const batchRows = parseBatchRows(rawOptions['batch_rows']);
  const rssLimitBytes = parseRssLimit(env[childEnv.rssLimit]);
  const file = stagingPath(extractor as Extractor<unknown>, env, channel);
  mkdirSync(path.dirname(file), { recursive: true });
  const small = extractor.staging === 'small';
  const settings = duckdbSettings({
    rssLimitBytes,
    threads: rawOptions['threads'] as number | undefined,
    databasePath: file,
    memoryLimitBytes: parseDuckdbMemory(rawOptions['duckdb_memory']),
    ...(small
      ? { memoryCapBytes: SMALL_STAGING.memoryBytes, blockSizeBytes: SMALL_STAGING.blockSizeBytes, checkpointThresholdBytes: SMALL_STAGING.checkpointThresholdBytes }
      : { memoryCapBytes: STAGING_WRITER_MEMORY_BYTES }),
  });
  const layout = small ? { rowGroupRows: SMALL_STAGING.rowGroupRows, evictCacheAboveBytes: SMALL_STAGING.evictCacheAboveBytes } : {};

  // The prepare step's slow first reads (a server's listing) run while DuckDB is loaded and the staging
  // file opened; its promise settles first, so that the main thread is not blocked loading DuckDB while
  // the prepare step still has answers to handle.
  const prepared = extractor.prepare?.(options, channelLog(channel));
  if (isThenable(prepared)) await Promise.race([prepared, interruption.promise]);
  if (interruption.failure !== undefined) throw interruption.failure;

  // Opening is not raced: the instance must exist (and be closed below) before anything can end the run.
  const session = await StagingSession.open(file, settings, layout);
  const heapTrim = startHeapTrim(env);
  const memoryTrace = startMemoryTrace(env[MEMORY_TRACE_ENV], () => session.duckdbMemoryBytes(), () => session.duckdbMemoryByTag());
  const fatal = interruption.promise;
  const fail = (error: Error): void => interruption.fail(error);
  let selfCheck: MemorySelfCheck | undefined;
  let closed = false;
  let ledgerForSalvage: UnitLedger | undefined;
  try {
    const ledger = await UnitLedger.open(session, batchRows);
    ledgerForSalvage = ledger;
    if (ledger.committedUnits > 0) channel.log('info', `resuming: ${ledger.committedUnits} units were committed by earlier attempts and will be skipped`);
    if (rssLimitBytes !== undefined) {
      selfCheck = startMemorySelfCheck({ rssLimitBytes, duckdbMemory: () => session.duckdbMemoryBytes(), onExceeded: (error) => fail(new UsageError(error.message)) });
      await Promise.race([selfCheck.checkNow(), fatal]);
    }
    const meta = {
      extractor: extractor.name,
      runId: env[childEnv.runId] ?? 'manual',
      job: env[childEnv.job] ?? extractor.name,
      attempt: Number(env[childEnv.attempt] ?? 1) || 1,
      warehouse: env[childEnv.warehouse] || undefined,
      batchRows,
    };
    const { context, state } = createContext(options, meta, session, ledger, channel);
    if (interruption.failure !== undefined) throw interruption.failure;
    await Promise.race([extractor.main(context, prepared), fatal]);
    await memoryTrace.mark('main-returned');
    // Units completed since the last group commit are committed now, before anything is counted.
    await Promise.race([ledger.finish(), fatal]);
    await Promise.race([session.flushOutsideUnits(), fatal]);
    selfCheck?.stop();

    if (channel.stopRequested) {
      await session.close({ checkpoint: true });
      closed = true;
      channel.log('warn', `stopped on request (${channel.stopReason}) after ${ledger.committedUnits} committed units; staging kept for a resume, not ready`);
      return exitCodes.stopped;
    }
    await memoryTrace.mark('committed');
    const tableRows = await session.tableRowCounts();
    const report = validate(state.expectation, { units: ledger.committedUnits, skipped: state.skipped.length, tableRows });
    await memoryTrace.mark('counted');
    await session.close({ checkpoint: true });
    closed = true;
    await memoryTrace.mark('closed');
    if (!report.ok) throw new ValidationFailed(validationFailureMessage(report));
    await channel.ready({
      tables: Object.keys(tableRows),
      rows: Object.values(tableRows).reduce((sum, rows) => sum + rows, 0),
      validation: report,
      ...(state.skipped.length > 0 ? { skipped: state.skipped } : {}),
    });
    return exitCodes.ok;
  } finally {
    selfCheck?.stop();
    memoryTrace.stop();
    heapTrim.stop();
    if (!closed) {
      // A failure: the completed units of the open group are committed when no unit is in flight
      // (bounded wait: a statement in flight may be slow), so a retry does not redo them.
      if (ledgerForSalvage !== undefined) {
        const salvage = ledgerForSalvage.salvage().catch(() => undefined);
        await Promise.race([salvage, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      }
      // Whatever was committed stays; the close releases the file lock for the retry.
      // The extractor's main may still be running (it lost a race against a signal or the memory
      // check): the session refuses its further statements and waits for the one DuckDB is running.
      await session.close({ checkpoint: false }).catch(() => undefined);
    }
  }
}

/**
 * Runs an extractor as the current process (the child side of duckvisor): reads the DUCKVISOR_*
 * environment, says hello, runs `main`, validates, sends `ready`, and exits with exitCodes.
 */
export async function runExtractor<Options>(extractor: Extractor<Options>, env: NodeJS.ProcessEnv = process.env): Promise<never> {
  keepYoungGenerationSmall(env);
  let channel: Channel;
  try {
    channel = openChannel({ heartbeatTimeoutMs: positiveNumber(env, childEnv.heartbeatTimeout, DEFAULT_HEARTBEAT_TIMEOUT_MS) });
  } catch (error) {
    process.stderr.write(`extractor '${extractor.name}' failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(exitCodes.failed);
  }
  channel.hello(extractor.name);
  const interruption = createInterruption();
  const onSignal = (signal: NodeJS.Signals): void => {
    // Later signals are ignored: teardown is short, and the supervisor's SIGKILL follows if it is not.
    if (interruption.failure instanceof StoppedBySignal) return;
    channel.requestStop(`received ${signal}`);
    interruption.fail(new StoppedBySignal(signal));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let code: number;
  try {
    code = await execute(extractor, channel, env, interruption);
  } catch (error) {
    if (error instanceof StoppedBySignal) {
      process.stderr.write(`extractor '${extractor.name}' ${error.message}\n`);
      channel.log('warn', `extractor '${extractor.name}' ${error.message}`);
      code = exitCodes.stopped;
    } else {
      const message = error instanceof UsageError || !(error instanceof Error) ? String(error instanceof Error ? error.message : error) : error.stack ?? error.message;
      process.stderr.write(`extractor '${extractor.name}' failed: ${message}\n`);
      channel.log('error', `extractor '${extractor.name}' failed: ${error instanceof Error ? error.message : String(error)}`);
      code = error instanceof ValidationFailed ? exitCodes.validation : exitCodes.failed;
    }
  }
  await channel.drain();
  channel.close();
  process.exit(code);
}
