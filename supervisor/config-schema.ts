// The shape of duckvisor.yaml as written by people: every key, its type and what it accepts.
// Values here are still raw (sizes and durations are text); supervisor/config.ts resolves them into
// a DaemonConfig. Each field's description is both the "what is allowed" half of a config error and
// the documentation in config/duckvisor.schema.json, so the two can never disagree.

import { Cron } from 'croner';
import { z } from 'zod';
import { alertEventKinds, retryReasons, type JobSettings, type RetryReason } from './types.js';
import { parseDuration, parseSize } from './units.js';

/** Job names end up in file names, URLs, environment values and log lines, so they are kept plain. */
export const jobNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** Longest accepted job name. */
export const jobNameMaxLength = 64;
/** Describes the job name rule in error messages. */
export const jobNameRule =
  `1-${jobNameMaxLength} characters: letters, digits, '_', '.', '-', starting with a letter or digit ` +
  '(names are restricted so they are safe in file names, shells and URLs)';

/** The progress line format of the original Python scripts: `[HEARTBEAT] <done>/<total>`. */
export const defaultProgressPattern = String.raw`\[HEARTBEAT\]\s*(?<done>\d+)\s*/\s*(?<total>\d+)`;

/** Reasons retried unless a config says otherwise: transient failures, not resource overruns. */
export const defaultRetryOn: readonly RetryReason[] = ['crash', 'heartbeat', 'stalled', 'timeout', 'interrupted'];

/** The built-in job settings that `defaults` overrides and each job overrides again. */
export const builtInDefaults: JobSettings = {
  limits: {},
  heartbeat_timeout: 30_000,
  stall_timeout: 600_000,
  max_runtime: 0,
  stop_grace: 10_000,
  sample_interval: 250,
  warn_at: 0.8,
  thrash_window: 10_000,
  retries: { max: 3, backoff: 5_000, factor: 2, max_backoff: 300_000, jitter: 0.2, on: [...defaultRetryOn] },
};

/** Smallest accepted sample_interval: below this the sampler itself becomes the load. */
export const minSampleInterval = 20;

/** Default `concurrency`. */
export const defaultConcurrency = 2;

/** Default history retention: the newest runs kept per job, and the age (days) past which finished runs go. */
export const historyDefaults = { keep_runs: 1000, keep_days: 90 };

/** Defaults of one alert hook. */
export const alertDefaults = { timeout: 10_000, retries: 2 };

const sizeForms =
  'a whole number of bytes (e.g. 1048576) or a number with a unit B, kB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. 512MiB, 4GiB, 200MB)';
const durationForms = 'a number with a unit ms, s, m, h, d, optionally combined (e.g. 250ms, 60s, 5m, 1h30m)';

/** Explains a value in an error message: its type and, when short, the value itself. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'nothing (an empty value)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the text ${JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value)}`;
  return `the ${typeof value} ${String(value)}`;
}

interface SizeOptions {
  /** Accept `none` (no limit, overriding a default). */
  none?: boolean;
  /** Accept 0. */
  zero?: boolean;
}

function sizeField(what: string, options: SizeOptions = {}) {
  const allowed = `${what}: ${sizeForms}${options.none ? ', or none for no limit' : ''}`;
  return z
    .union([z.number(), z.string()], { error: (issue) => `expected a size, found ${describeValue(issue.input)}` })
    .superRefine((value, ctx) => {
      if (options.none && value === 'none') return;
      if (typeof value === 'number' && !Number.isInteger(value)) {
        ctx.addIssue({ code: 'custom', message: `${value} is not a whole number of bytes` });
        return;
      }
      const bytes = parseSize(value);
      if (bytes === undefined) {
        ctx.addIssue({ code: 'custom', message: `${describeValue(value)} is not a size` });
      } else if (bytes === 0 && !options.zero) {
        ctx.addIssue({ code: 'custom', message: 'a size of 0 is not allowed here' });
      }
    })
    .meta({ description: allowed });
}

interface DurationOptions {
  /** Accept 0 and `none` (meaning unlimited). */
  none?: boolean;
  /** Smallest accepted value in ms. */
  min?: number;
}

function durationField(what: string, options: DurationOptions = {}) {
  const extra = [options.none ? '0 or none for no limit' : '', options.min ? `at least ${options.min}ms` : '']
    .filter(Boolean)
    .join('; ');
  const allowed = `${what}: ${durationForms}${extra ? `; ${extra}` : ''}`;
  return z
    .union([z.number(), z.string()], { error: (issue) => `expected a duration, found ${describeValue(issue.input)}` })
    .superRefine((value, ctx) => {
      if (options.none && (value === 0 || value === 'none')) return;
      if (typeof value === 'number') {
        ctx.addIssue({
          code: 'custom',
          message: `the bare number ${value} is ambiguous (seconds? milliseconds?); add a unit`,
        });
        return;
      }
      const ms = parseDuration(value);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `${describeValue(value)} is not a duration` });
      } else if (ms === 0) {
        ctx.addIssue({ code: 'custom', message: 'a duration of 0 is not allowed here' });
      } else if (options.min !== undefined && ms < options.min) {
        ctx.addIssue({ code: 'custom', message: `${value} is shorter than the minimum ${options.min}ms` });
      }
    })
    .meta({ description: allowed });
}

function fraction(what: string) {
  return z
    .number({ error: (issue) => `expected a number, found ${describeValue(issue.input)}` })
    .min(0)
    .max(1)
    .meta({ description: `${what}: a number from 0 to 1` });
}

function validRegexSource(source: string): string | undefined {
  try {
    new RegExp(source);
  } catch (error) {
    return `is not a valid regular expression (${(error as Error).message})`;
  }
  if (!/\(\?<done>/.test(source)) return 'has no named group (?<done>...) to read the progress count from';
  return undefined;
}

function validCron(expression: string): string | undefined {
  try {
    new Cron(expression, { paused: true }).stop();
    return undefined;
  } catch (error) {
    return `is not a valid cron expression (${(error as Error).message})`;
  }
}

const limitsSchema = z
  .strictObject({
    rss: sizeField('Largest resident memory of the whole process tree', { none: true }).optional(),
    swap: sizeField('Largest swap use of the whole process tree', { none: true, zero: true }).optional(),
    disk_free_min: sizeField('Smallest free space on the filesystems of state_dir and warehouse', {
      none: true,
      zero: true,
    }).optional(),
    majflt_rate: z
      .union([z.number().positive(), z.literal('none')], {
        error: (issue) => `expected a positive number, found ${describeValue(issue.input)}`,
      })
      .meta({
        description:
          'Major page faults per second of the tree, sustained over thrash_window, that count as thrashing: a number > 0, or none',
      })
      .optional(),
  })
  .meta({ description: 'Resource limits; a job merges its own keys over defaults.limits' });

const retriesSchema = z
  .strictObject({
    max: z.int().min(0).meta({ description: 'Retries after the first attempt: an integer >= 0 (default 3)' }).optional(),
    backoff: durationField('Delay before the first retry (default 5s)').optional(),
    factor: z.number().min(1).meta({ description: 'Multiplier of the delay per retry: a number >= 1 (default 2)' }).optional(),
    max_backoff: durationField('Longest delay between retries (default 5m)').optional(),
    jitter: fraction('Fraction of the delay randomised (default 0.2)').optional(),
    on: z
      .array(z.enum(retryReasons, { error: (issue) => `${describeValue(issue.input)} is not a retry reason` }))
      .meta({
        description: `Reasons that are retried, a list of: ${retryReasons.join(', ')} (default ${defaultRetryOn.join(', ')})`,
      })
      .optional(),
  })
  .meta({ description: 'Retry policy; a job merges its own keys over defaults.retries' });

/** The settings `defaults` holds and every job may override under the same names. */
const settingsShape = {
  limits: limitsSchema.optional(),
  heartbeat_timeout: durationField('No message at all for this long kills the run, reason heartbeat (default 30s)').optional(),
  stall_timeout: durationField('Progress not advancing for this long kills the run, reason stalled (default 10m)').optional(),
  max_runtime: durationField('Longest run before it is killed, reason timeout (default none)', { none: true }).optional(),
  stop_grace: durationField('Time between SIGTERM and SIGKILL when stopping a run (default 10s)').optional(),
  sample_interval: durationField('Time between resource samples (default 250ms)', { min: minSampleInterval }).optional(),
  warn_at: fraction('Fraction of a limit at which a one-time warning is emitted (default 0.8)').optional(),
  thrash_window: durationField('How long majflt_rate must be exceeded to count as thrashing (default 10s)').optional(),
  retries: retriesSchema.optional(),
};

const argvSchema = z
  .array(z.string({ error: (issue) => `expected a text argument, found ${describeValue(issue.input)}` }).min(1), {
    error: (issue) =>
      typeof issue.input === 'string'
        ? `expected a list of arguments, found the text ${JSON.stringify(issue.input)} (no shell is used, so it cannot be split)`
        : `expected a list of arguments, found ${describeValue(issue.input)}`,
  })
  .min(1);

const jobSchema = z
  .strictObject({
    command: argvSchema
      .meta({
        description: 'The program and its arguments as a list, e.g. [python3, extract.py, --fast]; run without a shell',
      })
      .optional(),
    extractor: z
      .string()
      .min(1)
      .meta({ description: 'A built-in extractor name (e.g. mlflow-runs) or the path of an extractor module' })
      .optional(),
    options: z
      .record(z.string(), z.unknown())
      .meta({ description: 'Free-form options handed to the extractor (a mapping)' })
      .optional(),
    autostart: z.boolean().meta({ description: 'Start the job when the daemon starts: true or false (default true)' }).optional(),
    heartbeat: z
      .enum(['ipc', 'stdout', 'none'])
      .meta({
        description:
          'How liveness and progress are read: ipc (protocol messages), stdout (progress_pattern lines) or none (default ipc for extractor jobs, stdout for command jobs)',
      })
      .optional(),
    progress_pattern: z
      .string()
      .superRefine((source, ctx) => {
        const problem = validRegexSource(source);
        if (problem) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(source)} ${problem}` });
      })
      .meta({
        description: `A JavaScript regular expression with a named group (?<done>\\d+) and optionally (?<total>\\d+) (default ${defaultProgressPattern})`,
      })
      .optional(),
    env: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'is not a valid environment variable name' }),
        z.string({
          error: (issue) => `expected text, found ${describeValue(issue.input)} (quote it, e.g. "${String(issue.input)}")`,
        }),
      )
      .meta({ description: 'Extra environment variables: a mapping of NAME to quoted text' })
      .optional(),
    cwd: z
      .string()
      .min(1)
      .meta({ description: 'Working directory, relative to the config file (default: the config file directory)' })
      .optional(),
    schedule: z
      .string()
      .superRefine((expression, ctx) => {
        const problem = validCron(expression);
        if (problem) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(expression)} ${problem}` });
      })
      .meta({ description: 'A cron expression, e.g. "0 3 * * *" or "*/15 * * * *"; a tick is skipped while a run is live' })
      .optional(),
    after: z
      .array(z.string())
      .meta({ description: 'Names of jobs that must succeed in the same cycle before this one is queued' })
      .optional(),
    ...settingsShape,
  })
  .meta({ description: 'One job: exactly one of command or extractor, plus optional settings' });

const alertSchema = z
  .strictObject({
    on: z
      .array(z.enum(alertEventKinds, { error: (issue) => `${describeValue(issue.input)} is not an alert event` }))
      .min(1)
      .meta({ description: `Events that trigger this hook, a non-empty list of: ${alertEventKinds.join(', ')}` }),
    command: argvSchema
      .meta({ description: 'A program and its arguments; the event arrives as JSON on stdin and DUCKVISOR_* variables' })
      .optional(),
    webhook: z
      .string()
      .superRefine((text, ctx) => {
        let url: URL | undefined;
        try {
          url = new URL(text);
        } catch {
          // reported below
        }
        if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
          ctx.addIssue({ code: 'custom', message: `${JSON.stringify(text)} is not an http(s) URL` });
        }
      })
      .meta({ description: 'An http:// or https:// URL receiving a JSON POST' })
      .optional(),
    timeout: durationField('Time a delivery may take before it is abandoned (default 10s)').optional(),
    retries: z.int().min(0).meta({ description: 'Delivery retries: an integer >= 0 (default 2)' }).optional(),
  })
  .meta({ description: 'An alert hook: on, plus exactly one of command or webhook' });

const controlSchema = z
  .strictObject({
    socket: z
      .string()
      .min(1)
      .meta({
        description:
          'Path of the control socket, relative to the config file (default $RUNTIME_DIRECTORY/duckvisor.sock, else <state_dir>/duckvisor.sock)',
      })
      .optional(),
    http: z
      .string()
      .meta({ description: 'host:port of the HTTP listener for /metrics and the web page, e.g. 127.0.0.1:9464 (default: none)' })
      .optional(),
    http_token: z
      .string()
      .min(1)
      .meta({ description: 'Bearer token required by the HTTP listener; mandatory when control.http is not a loopback address' })
      .optional(),
  })
  .meta({ description: 'How duckvisorctl and browsers reach the daemon' });

const historySchema = z
  .strictObject({
    keep_runs: z
      .int()
      .min(0)
      .meta({ description: `Finished runs kept per job, newest first; older ones are deleted with their samples and events: an integer >= 0, 0 = no count limit (default ${historyDefaults.keep_runs})` })
      .optional(),
    keep_days: z
      .number()
      .min(0)
      .meta({ description: `Finished runs (and daemon events) older than this many days are deleted: a number >= 0, 0 = no age limit (default ${historyDefaults.keep_days})` })
      .optional(),
  })
  .meta({ description: 'Retention of history.sqlite; live, queued and still-retrying runs are never deleted' });

/** The whole config file as written (raw values). */
export const configFileSchema = z
  .strictObject({
    state_dir: z
      .string()
      .min(1)
      .meta({ description: 'Directory for history, staging and logs, relative to the config file (default $STATE_DIRECTORY)' })
      .optional(),
    warehouse: z
      .string()
      .min(1)
      .meta({ description: 'The published DuckDB file, relative to the config file (default <state_dir>/warehouse.duckdb)' })
      .optional(),
    concurrency: z.int().min(1).meta({ description: 'How many runs may be live at once: an integer >= 1 (default 2)' }).optional(),
    recovery: z
      .enum(['kill', 'adopt'])
      .meta({ description: 'What to do with live runs of a crashed daemon: kill or adopt (default kill)' })
      .optional(),
    control: controlSchema.optional(),
    history: historySchema.optional(),
    defaults: z
      .strictObject(settingsShape)
      .meta({ description: 'Settings every job inherits unless it sets its own' })
      .optional(),
    jobs: z
      .record(
        z
          .string()
          .max(jobNameMaxLength, { error: `is longer than ${jobNameMaxLength} characters` })
          .regex(jobNamePattern, { error: 'is not an accepted job name' }),
        jobSchema,
      )
      .nullable()
      .meta({ description: `The supervised jobs, a mapping of job name to job; names: ${jobNameRule}` })
      .optional(),
    alerts: z.array(alertSchema).nullable().meta({ description: 'Alert hooks, a list' }).optional(),
  })
  .meta({ title: 'duckvisor configuration', description: 'duckvisor.yaml: the supervisor daemon configuration' });

/** The config file as written, after schema validation (sizes and durations still raw). */
export type ConfigFile = z.output<typeof configFileSchema>;
/** One job as written. */
export type JobFile = z.output<typeof jobSchema>;
/** The settings block (`defaults` or a job) as written. */
export type SettingsFile = Partial<Pick<JobFile, keyof typeof settingsShape>>;

/** JSON Schema of duckvisor.yaml, for editors (yaml-language-server) and config/duckvisor.schema.json. */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configFileSchema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>;
}

type AnySchema = z.core.$ZodType;

function definitionOf(schema: AnySchema): { type: string; [key: string]: unknown } {
  return schema._zod.def as unknown as { type: string; [key: string]: unknown };
}

function descriptionOf(schema: AnySchema): string | undefined {
  return z.globalRegistry.get(schema)?.description;
}

/** Strips optional/nullable/default wrappers, keeping the first description met on the way. */
function unwrap(schema: AnySchema): { schema: AnySchema; description: string | undefined } {
  let current = schema;
  let description = descriptionOf(current);
  for (;;) {
    const def = definitionOf(current);
    if (def.type === 'optional' || def.type === 'nullable' || def.type === 'default') {
      current = def['innerType'] as AnySchema;
    } else if (def.type === 'pipe') {
      current = def['in'] as AnySchema;
    } else {
      return { schema: current, description };
    }
    description ??= descriptionOf(current);
  }
}

/** What the schema accepts at one field path: its description and, for mappings with fixed keys, those keys. */
export interface FieldRule {
  description: string | undefined;
  keys: string[] | undefined;
}

/** Looks up the rule for a field path such as ['jobs', 'etl', 'limits', 'rss'] (undefined when none). */
export function fieldRule(path: readonly PropertyKey[]): FieldRule | undefined {
  let current: AnySchema = configFileSchema;
  let listDescription: string | undefined;
  for (let depth = 0; ; depth += 1) {
    const unwrapped = unwrap(current);
    // A list item or mapping value without its own description is explained by its container's.
    const description = unwrapped.description ?? listDescription;
    listDescription = undefined;
    const def = definitionOf(unwrapped.schema);
    if (depth === path.length) {
      const keys = def.type === 'object' ? Object.keys(def['shape'] as object) : undefined;
      return { description, keys };
    }
    const segment = path[depth]!;
    if (def.type === 'object') {
      const shape = def['shape'] as Record<string, AnySchema>;
      if (typeof segment !== 'string' || !(segment in shape)) return undefined;
      current = shape[segment]!;
    } else if (def.type === 'record') {
      current = def['valueType'] as AnySchema;
      listDescription = description;
    } else if (def.type === 'array') {
      current = def['element'] as AnySchema;
      listDescription = description;
    } else {
      return undefined;
    }
  }
}
