// The child protocol, version 1: the one definition both sides use. Children send these over Node's
// IPC channel (serialization 'json'); Python children write the same objects as JSON lines on the fd
// named by NODE_CHANNEL_FD. Every message is validated on receipt, so a buggy child can only ever
// produce a logged, counted "bad message", never an exception in the supervisor.
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;

/** Messages larger than this (serialized) are rejected before parsing their content. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

const count = z.number().int().nonnegative();

export const helloMessage = z.strictObject({
  type: z.literal('hello'),
  protocol: z.literal(PROTOCOL_VERSION),
  extractor: z.string().min(1).max(200),
  pid: z.number().int().positive(),
});

export const heartbeatMessage = z.strictObject({
  type: z.literal('heartbeat'),
});

export const progressMessage = z.strictObject({
  type: z.literal('progress'),
  done: z.number().nonnegative(),
  total: z.number().nonnegative().optional(),
  unit: z.string().min(1).max(64),
  rows: count.optional(),
});

export const validationReport = z.strictObject({
  ok: z.boolean(),
  units: count,
  expected_units: count.optional(),
  problems: z.array(z.string().max(2000)).max(1000),
});

export const readyMessage = z.strictObject({
  type: z.literal('ready'),
  tables: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/)).max(1000),
  rows: count,
  validation: validationReport,
  /** Units (e.g. MLflow runs) that were skipped as bad input, with the reason; listed in the run's result. */
  skipped: z.array(z.strictObject({ key: z.string().max(1000), error: z.string().max(4000) })).max(100_000).optional(),
});

export const logMessage = z.strictObject({
  type: z.literal('log'),
  level: z.enum(['debug', 'info', 'warn', 'error']),
  msg: z.string().max(64 * 1024),
});

export const childMessage = z.discriminatedUnion('type', [
  helloMessage,
  heartbeatMessage,
  progressMessage,
  readyMessage,
  logMessage,
]);

export const stopMessage = z.strictObject({
  type: z.literal('stop'),
  reason: z.string(),
});

export type HelloMessage = z.infer<typeof helloMessage>;
export type HeartbeatMessage = z.infer<typeof heartbeatMessage>;
export type ProgressMessage = z.infer<typeof progressMessage>;
export type ReadyMessage = z.infer<typeof readyMessage>;
export type LogMessage = z.infer<typeof logMessage>;
export type ChildMessage = z.infer<typeof childMessage>;
export type StopMessage = z.infer<typeof stopMessage>;

export type ParsedMessage = { ok: true; message: ChildMessage } | { ok: false; error: string };

/** Validates one received value; never throws. `serializedBytes` lets the caller pass a known size. */
export function parseChildMessage(value: unknown, serializedBytes?: number): ParsedMessage {
  let size = serializedBytes;
  if (size === undefined) {
    try {
      size = typeof value === 'string' ? value.length : JSON.stringify(value)?.length ?? 0;
    } catch {
      return { ok: false, error: 'message cannot be serialized' };
    }
  }
  if (size > MAX_MESSAGE_BYTES) {
    return { ok: false, error: `message of ${size} bytes exceeds the ${MAX_MESSAGE_BYTES}-byte limit` };
  }
  const result = childMessage.safeParse(value);
  if (result.success) return { ok: true, message: result.data };
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
  const type = typeof value === 'object' && value !== null && 'type' in value ? String((value as { type: unknown }).type) : typeof value;
  return { ok: false, error: `invalid '${type}' message${where}: ${issue?.message ?? 'unknown error'}` };
}

export { childEnv } from './child-env.js';
