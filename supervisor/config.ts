// Reads duckvisor.yaml into a validated DaemonConfig. Every problem in the file is reported at once,
// each with its line, column and field path, what is wrong and what is allowed, so a config can be
// fixed in one pass. Relative paths resolve against the directory of the config file.

import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { core } from 'zod';
import {
  alertDefaults,
  historyDefaults,
  builtInDefaults,
  configFileSchema,
  defaultConcurrency,
  defaultProgressPattern,
  describeValue,
  fieldRule,
  jobNameRule,
  type ConfigFile,
  type JobFile,
  type SettingsFile,
} from './config-schema.js';
import type { AlertConfig, DaemonConfig, JobConfig, JobSettings, Limits } from './types.js';
import { formatBytes, parseDuration, parseSize } from './units.js';

/** The last place the daemon looks for its config. */
export const systemConfigPath = '/etc/duckvisor/duckvisor.yaml';

/** Longest unix socket path Linux accepts (sun_path is 108 bytes including the terminating NUL). */
const maxSocketPathBytes = 107;

/** One thing wrong with a config file. */
export interface ConfigProblem {
  file: string;
  /** 1-based; absent for problems with the file itself. */
  line?: number;
  column?: number;
  /** e.g. `jobs.etl.limits.rss`; empty for the file itself or the whole document. */
  fieldPath: string;
  /** What is wrong. */
  problem: string;
  /** What is allowed or what to do. */
  allowed: string;
}

/** Renders a problem as `<file>:<line>:<col>: <field.path>: <what is wrong>; <what is allowed>`. */
export function formatProblem(problem: ConfigProblem): string {
  const where = problem.line === undefined ? problem.file : `${problem.file}:${problem.line}:${problem.column ?? 1}`;
  const field = problem.fieldPath ? `${problem.fieldPath}: ` : '';
  const allowed = problem.allowed ? `; ${problem.allowed}` : '';
  return `${where}: ${field}${problem.problem}${allowed}`;
}

/** Thrown by loadConfig; lists every problem found, the first one's location on the error itself. */
export class ConfigError extends Error {
  readonly file: string;
  readonly line?: number;
  readonly column?: number;
  readonly fieldPath: string;
  readonly problems: ConfigProblem[];

  constructor(file: string, problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    const first = problems[0];
    this.file = file;
    if (first?.line !== undefined) this.line = first.line;
    if (first?.column !== undefined) this.column = first.column;
    this.fieldPath = first?.fieldPath ?? '';
    this.problems = problems;
  }
}

/** Picks the config file: `--config FILE`, else $DUCKVISOR_CONFIG, else ./duckvisor.yaml if present, else /etc. */
export function resolveConfigPath(explicit?: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  if (explicit) return path.resolve(cwd, explicit);
  const fromEnv = env['DUCKVISOR_CONFIG'];
  if (fromEnv) return path.resolve(cwd, fromEnv);
  const local = path.resolve(cwd, 'duckvisor.yaml');
  if (existsSync(local)) return local;
  return systemConfigPath;
}

/** Reads, validates and resolves one config file; throws ConfigError listing every problem. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const absolute = path.resolve(file);
  const text = readConfigText(absolute);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: false });
  const locator = new Locator(absolute, doc, lineCounter);

  if (doc.errors.length > 0) {
    throw new ConfigError(
      absolute,
      doc.errors.map((error) => {
        const position = lineCounter.linePos(error.pos[0]);
        return {
          file: absolute,
          line: position.line,
          column: position.col,
          fieldPath: '',
          problem: `YAML syntax error: ${error.message}`,
          allowed: 'fix the YAML here (check indentation, quotes, brackets and the `key: value` form)',
        };
      }),
    );
  }

  const problems: ConfigProblem[] = [...duplicateKeyProblems(doc, locator)];
  const raw: unknown = doc.contents === null ? {} : doc.toJS({ maxAliasCount: 1000 });
  const parsed = configFileSchema.safeParse(raw);
  if (!parsed.success) problems.push(...parsed.error.issues.flatMap((issue) => issueProblems(issue, raw, locator)));
  problems.push(...semanticProblems(raw, env, locator));

  if (problems.length === 0 && parsed.success) {
    const config = resolveConfig(absolute, parsed.data, env);
    if (Buffer.byteLength(config.control.socket) > maxSocketPathBytes) {
      problems.push(
        locator.problem(
          ['control', 'socket'],
          `the socket path ${config.control.socket} is ${Buffer.byteLength(config.control.socket)} bytes long`,
          `unix socket paths are limited to ${maxSocketPathBytes} bytes; set a shorter control.socket`,
        ),
      );
    } else {
      return config;
    }
  }
  throw new ConfigError(absolute, sortProblems(problems));
}

function readConfigText(file: string): string {
  const fail = (problem: string, allowed: string): never => {
    throw new ConfigError(file, [{ file, fieldPath: '', problem, allowed }]);
  };
  const howToChoose = 'pass --config FILE or set DUCKVISOR_CONFIG (config/duckvisor.yaml is a commented example)';
  let isDirectory = false;
  try {
    isDirectory = statSync(file).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      let target: string | undefined;
      try {
        if (lstatSync(file).isSymbolicLink()) target = readlinkSync(file);
      } catch {
        // not a link either: plainly missing
      }
      if (target !== undefined) fail(`cannot read the config file: it is a broken symbolic link to ${target}`, `point the link at an existing file, or ${howToChoose}`);
      fail('cannot read the config file: it does not exist', `create it, or ${howToChoose}`);
    }
    if (code === 'EACCES') fail('cannot read the config file: permission denied on the path', 'make the file and its directories readable by the daemon user');
    if (code === 'ENOTDIR') fail('cannot read the config file: a part of the path is not a directory', howToChoose);
    fail(`cannot read the config file: ${(error as Error).message}`, howToChoose);
  }
  if (isDirectory) fail('cannot read the config file: it is a directory', `pass the YAML file itself, e.g. ${path.join(file, 'duckvisor.yaml')}`);
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES') fail('cannot read the config file: permission denied', 'make it readable by the daemon user');
    return fail(`cannot read the config file: ${(error as Error).message}`, howToChoose);
  }
}

type FieldPath = readonly PropertyKey[];

/** Renders ['jobs', 'etl', 'command', 0] as `jobs.etl.command[0]` (keys with dots are bracketed). */
export function formatFieldPath(fieldPath: FieldPath): string {
  let out = '';
  for (const segment of fieldPath) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z0-9_-]+$/.test(String(segment))) out += out ? `.${String(segment)}` : String(segment);
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/** Finds YAML nodes for field paths and turns offsets into lines and columns. */
class Locator {
  constructor(
    readonly file: string,
    private readonly doc: Document,
    private readonly lineCounter: LineCounter,
  ) {}

  /** The node at `fieldPath` (its key when `atKey`), or the closest existing ancestor. */
  private find(fieldPath: FieldPath, atKey: boolean): Node | undefined {
    let node: unknown = this.doc.contents;
    let best: Node | undefined = (node as Node | null) ?? undefined;
    for (let index = 0; index < fieldPath.length; index += 1) {
      const segment = fieldPath[index];
      if (isAlias(node)) node = node.resolve(this.doc);
      if (isMap(node)) {
        const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
        if (!pair) return best;
        const last = index === fieldPath.length - 1;
        if ((last && atKey) || pair.value === null || pair.value === undefined) {
          return (pair.key as Node | undefined) ?? best;
        }
        node = pair.value;
      } else if (isSeq(node) && typeof segment === 'number') {
        node = node.items[segment];
      } else {
        return best;
      }
      if (node && typeof node === 'object' && 'range' in node) best = node as Node;
      else return best;
    }
    return best;
  }

  position(fieldPath: FieldPath, atKey = false): { line?: number; column?: number } {
    const node = this.find(fieldPath, atKey);
    if (!node?.range) return { line: 1, column: 1 };
    const { line, col } = this.lineCounter.linePos(node.range[0]);
    return { line, column: col };
  }

  positionOfOffset(offset: number): { line: number; column: number } {
    const { line, col } = this.lineCounter.linePos(offset);
    return { line, column: col };
  }

  problem(fieldPath: FieldPath, problem: string, allowed: string, atKey = false): ConfigProblem {
    return { file: this.file, ...this.position(fieldPath, atKey), fieldPath: formatFieldPath(fieldPath), problem, allowed };
  }
}

function duplicateKeyProblems(doc: Document, locator: Locator): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const walk = (node: unknown, fieldPath: PropertyKey[]): void => {
    if (isMap(node)) {
      const firstLines = new Map<string, number>();
      for (const pair of node.items) {
        if (!isPair(pair) || !isScalar(pair.key)) continue;
        const key = String(pair.key.value);
        const position = pair.key.range ? locator.positionOfOffset(pair.key.range[0]) : { line: 1, column: 1 };
        const line = position.line;
        const firstLine = firstLines.get(key);
        if (firstLine === undefined) {
          firstLines.set(key, line);
        } else {
          const what = fieldPath.length === 1 && fieldPath[0] === 'jobs' ? `job ${key}` : `key ${key}`;
          problems.push({
            ...locator.problem([...fieldPath, key], '', ''),
            ...position,
            problem: `duplicate ${what}: defined on line ${firstLine} and again on line ${line}`,
            allowed: 'each key may appear once in a mapping; remove or rename one of them',
          });
        }
        walk(pair.value, [...fieldPath, key]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, index) => walk(item, [...fieldPath, index]));
    }
  };
  walk(doc.contents, []);
  return problems;
}

function valueAt(raw: unknown, fieldPath: FieldPath): unknown {
  let value = raw;
  for (const segment of fieldPath) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[segment];
  }
  return value;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j += 1) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The allowed key closest to a misspelt one, when close enough to be a likely typo. */
export function closestKey(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function allowedFor(fieldPath: FieldPath): string {
  const rule = fieldRule(fieldPath);
  if (!rule) return '';
  if (rule.keys && !rule.description) return `allowed keys: ${rule.keys.join(', ')}`;
  return rule.description ?? '';
}

function articleFor(expected: string): string {
  const names: Record<string, string> = {
    object: 'a mapping',
    array: 'a list',
    string: 'text',
    number: 'a number',
    int: 'an integer',
    boolean: 'true or false',
    record: 'a mapping',
  };
  return names[expected] ?? expected;
}

function issueProblems(issue: core.$ZodIssue, raw: unknown, locator: Locator): ConfigProblem[] {
  const fieldPath = issue.path;
  const value = valueAt(raw, fieldPath);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const rule = fieldRule(fieldPath);
      const keys = rule?.keys ?? [];
      return issue.keys.map((key) => {
        const suggestion = closestKey(key, keys);
        const hint = suggestion ? `did you mean \`${suggestion}\`? ` : '';
        return locator.problem([...fieldPath, key], `unknown key \`${key}\``, `${hint}allowed keys here: ${keys.join(', ')}`, true);
      });
    }
    case 'invalid_key': {
      const inner = issue.issues[0]?.message ?? 'is not accepted';
      const key = String(fieldPath[fieldPath.length - 1]);
      const isJobName = fieldPath.length === 2 && fieldPath[0] === 'jobs';
      const allowed = isJobName ? `job names: ${jobNameRule}` : 'environment variable names: letters, digits and _, not starting with a digit';
      return [locator.problem(fieldPath, `${isJobName ? 'job name' : 'name'} ${JSON.stringify(key)} ${inner}`, allowed, true)];
    }
    case 'invalid_type':
      if (value === undefined && issue.expected !== 'undefined') {
        return [locator.problem(fieldPath, 'is missing', allowedFor(fieldPath))];
      }
      if (!issue.message.startsWith('Invalid input')) return [locator.problem(fieldPath, issue.message, allowedFor(fieldPath))];
      return [locator.problem(fieldPath, `expected ${articleFor(issue.expected)}, found ${describeValue(value)}`, allowedFor(fieldPath))];
    case 'invalid_value':
      return [locator.problem(fieldPath, issue.message.startsWith('Invalid') ? `${describeValue(value)} is not allowed` : issue.message, allowedFor(fieldPath))];
    case 'too_small':
      if (Array.isArray(value)) return [locator.problem(fieldPath, 'must not be empty', allowedFor(fieldPath))];
      if (typeof value === 'string') return [locator.problem(fieldPath, 'must not be empty text', allowedFor(fieldPath))];
      return [locator.problem(fieldPath, `${describeValue(value)} is below the minimum ${String(issue.minimum)}`, allowedFor(fieldPath))];
    case 'too_big':
      return [locator.problem(fieldPath, `${describeValue(value)} is above the maximum ${String(issue.maximum)}`, allowedFor(fieldPath))];
    default:
      return [locator.problem(fieldPath, issue.message, allowedFor(fieldPath))];
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function firstDir(list: string | undefined): string | undefined {
  const first = list?.split(':')[0];
  return first ? first : undefined;
}

/** Splits `host:port` (IPv6 in brackets); undefined when malformed. */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[2]);
  if (port > 65535) return undefined;
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Checks that span fields or need the whole file: exactly-one choices, dependencies, access rules. */
function semanticProblems(raw: unknown, env: NodeJS.ProcessEnv, locator: Locator): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (!isRecord(raw)) return problems;

  if (raw['state_dir'] === undefined && !firstDir(env['STATE_DIRECTORY'])) {
    problems.push(
      locator.problem(['state_dir'], 'is missing', 'set state_dir to a directory for history, staging and logs (relative to the config file), or run under systemd with StateDirectory='),
    );
  }

  const control = raw['control'];
  if (isRecord(control) && typeof control['http'] === 'string') {
    const address = parseHostPort(control['http']);
    if (!address) {
      problems.push(locator.problem(['control', 'http'], `${describeValue(control['http'])} is not host:port`, 'host:port, e.g. 127.0.0.1:9464 or [::1]:9464 (port 0-65535)'));
    } else if (!isLoopbackHost(address.host) && !(typeof control['http_token'] === 'string' && control['http_token'])) {
      problems.push(
        locator.problem(['control', 'http'], `${address.host} is not a loopback address and control.http_token is not set`, 'use 127.0.0.1/localhost/[::1], or set control.http_token so requests must carry it as a bearer token'),
      );
    }
  }

  const jobs = raw['jobs'];
  if (isRecord(jobs)) {
    for (const [name, job] of Object.entries(jobs)) {
      if (!isRecord(job)) continue;
      const hasCommand = job['command'] !== undefined;
      const hasExtractor = job['extractor'] !== undefined;
      if (hasCommand && hasExtractor) {
        problems.push(locator.problem(['jobs', name, 'extractor'], 'both command and extractor are set', 'a job has exactly one of command: [argv...] or extractor: <name>', true));
      } else if (!hasCommand && !hasExtractor) {
        problems.push(locator.problem(['jobs', name], 'neither command nor extractor is set', 'a job has exactly one of command: [argv...] (any program) or extractor: <name> (+ options)', true));
      }
      if (hasCommand && job['options'] !== undefined) {
        problems.push(locator.problem(['jobs', name, 'options'], 'options are only read by extractor jobs', 'pass settings to a command through its arguments or env', true));
      }
      const after = job['after'];
      if (Array.isArray(after)) {
        after.forEach((dependency, index) => {
          if (typeof dependency !== 'string') return;
          if (dependency === name) {
            problems.push(locator.problem(['jobs', name, 'after', index], `job ${name} depends on itself`, 'list other jobs only'));
          } else if (!(dependency in jobs)) {
            const suggestion = closestKey(dependency, Object.keys(jobs));
            problems.push(
              locator.problem(['jobs', name, 'after', index], `unknown job \`${dependency}\``, `${suggestion ? `did you mean \`${suggestion}\`? ` : ''}defined jobs: ${Object.keys(jobs).join(', ')}`),
            );
          }
        });
      }
    }
    for (const cycle of dependencyCycles(jobs)) {
      problems.push(locator.problem(['jobs', cycle[0]!, 'after'], `dependency cycle ${cycle.join(' → ')}`, 'jobs listed in after must form no cycle; remove one of these dependencies'));
    }
  }

  const alerts = raw['alerts'];
  if (Array.isArray(alerts)) {
    alerts.forEach((alert, index) => {
      if (!isRecord(alert)) return;
      const hasCommand = alert['command'] !== undefined;
      const hasWebhook = alert['webhook'] !== undefined;
      if (hasCommand === hasWebhook) {
        problems.push(
          locator.problem(['alerts', index], hasCommand ? 'both command and webhook are set' : 'neither command nor webhook is set', 'an alert hook has exactly one of command: [argv...] or webhook: URL'),
        );
      }
    });
  }
  return problems;
}

/** Each elementary cycle of `after` edges once, as names ending where they start (a → b → a). */
function dependencyCycles(jobs: Record<string, unknown>): string[][] {
  const edges = new Map<string, string[]>();
  for (const [name, job] of Object.entries(jobs)) {
    const after = isRecord(job) && Array.isArray(job['after']) ? job['after'] : [];
    edges.set(name, after.filter((dependency): dependency is string => typeof dependency === 'string' && dependency in jobs && dependency !== name));
  }
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (name: string): void => {
    state.set(name, 'visiting');
    stack.push(name);
    for (const next of edges.get(name) ?? []) {
      if (state.get(next) === 'visiting') {
        const loop = stack.slice(stack.indexOf(next));
        const start = loop.indexOf([...loop].sort()[0]!);
        const rotated = [...loop.slice(start), ...loop.slice(0, start)];
        const key = rotated.join('\0');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push([...rotated, rotated[0]!]);
        }
      } else if (!state.has(next)) {
        visit(next);
      }
    }
    stack.pop();
    state.set(name, 'done');
  };
  for (const name of [...edges.keys()].sort()) if (!state.has(name)) visit(name);
  return cycles;
}

function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return problems
    .map((problem, index) => ({ problem, index }))
    .sort((a, b) => (a.problem.line ?? 0) - (b.problem.line ?? 0) || (a.problem.column ?? 0) - (b.problem.column ?? 0) || a.index - b.index)
    .map(({ problem }) => problem);
}

function sizeValue(text: string | number | undefined, inherited: number | undefined): number | undefined {
  if (text === undefined) return inherited;
  if (text === 'none') return undefined;
  return parseSize(text);
}

function durationValue(text: string | number | undefined, inherited: number): number {
  if (text === undefined) return inherited;
  if (text === 'none' || text === 0) return 0;
  return parseDuration(text)!;
}

function mergeLimits(block: SettingsFile['limits'], base: Limits): Limits {
  const limits: Limits = {};
  const rss = sizeValue(block?.rss, base.rss);
  const swap = sizeValue(block?.swap, base.swap);
  const diskFreeMin = sizeValue(block?.disk_free_min, base.disk_free_min);
  const majfltRate = block?.majflt_rate === undefined ? base.majflt_rate : block.majflt_rate === 'none' ? undefined : block.majflt_rate;
  if (rss !== undefined) limits.rss = rss;
  if (swap !== undefined) limits.swap = swap;
  if (diskFreeMin !== undefined) limits.disk_free_min = diskFreeMin;
  if (majfltRate !== undefined) limits.majflt_rate = majfltRate;
  return limits;
}

function mergeSettings(block: SettingsFile | undefined, base: JobSettings): JobSettings {
  const retries = block?.retries;
  return {
    limits: mergeLimits(block?.limits, base.limits),
    heartbeat_timeout: durationValue(block?.heartbeat_timeout, base.heartbeat_timeout),
    stall_timeout: durationValue(block?.stall_timeout, base.stall_timeout),
    max_runtime: durationValue(block?.max_runtime, base.max_runtime),
    stop_grace: durationValue(block?.stop_grace, base.stop_grace),
    sample_interval: durationValue(block?.sample_interval, base.sample_interval),
    warn_at: block?.warn_at ?? base.warn_at,
    thrash_window: durationValue(block?.thrash_window, base.thrash_window),
    retries: {
      max: retries?.max ?? base.retries.max,
      backoff: durationValue(retries?.backoff, base.retries.backoff),
      factor: retries?.factor ?? base.retries.factor,
      max_backoff: durationValue(retries?.max_backoff, base.retries.max_backoff),
      jitter: retries?.jitter ?? base.retries.jitter,
      on: retries?.on ? [...new Set(retries.on)] : [...base.retries.on],
    },
  };
}

/** Extractor values that look like a module path (not a built-in name) resolve like every other path. */
function resolveExtractor(extractor: string, configDir: string): string {
  const looksLikePath = extractor.includes('/') || /\.(m?js|ts)$/.test(extractor);
  return looksLikePath ? path.resolve(configDir, extractor) : extractor;
}

function resolveJob(name: string, job: JobFile, defaults: JobSettings, configDir: string): JobConfig {
  const resolved: JobConfig = {
    name,
    ...mergeSettings(job, defaults),
    options: job.options ?? {},
    autostart: job.autostart ?? true,
    heartbeat: job.heartbeat ?? (job.extractor !== undefined ? 'ipc' : 'stdout'),
    progress_pattern: job.progress_pattern ?? defaultProgressPattern,
    env: job.env ?? {},
    cwd: path.resolve(configDir, job.cwd ?? '.'),
    after: [...new Set(job.after ?? [])],
  };
  if (job.command) resolved.command = job.command;
  if (job.extractor !== undefined) resolved.extractor = resolveExtractor(job.extractor, configDir);
  if (job.schedule !== undefined) resolved.schedule = job.schedule;
  return resolved;
}

function resolveConfig(file: string, data: ConfigFile, env: NodeJS.ProcessEnv): DaemonConfig {
  const configDir = path.dirname(file);
  const stateDir = data.state_dir !== undefined ? path.resolve(configDir, data.state_dir) : path.resolve(firstDir(env['STATE_DIRECTORY'])!);
  const runtimeDir = firstDir(env['RUNTIME_DIRECTORY']);
  const control: DaemonConfig['control'] = {
    socket:
      data.control?.socket !== undefined
        ? path.resolve(configDir, data.control.socket)
        : path.join(runtimeDir ? path.resolve(runtimeDir) : stateDir, 'duckvisor.sock'),
  };
  if (data.control?.http !== undefined) control.http = data.control.http;
  if (data.control?.http_token !== undefined) control.http_token = data.control.http_token;

  const defaults = mergeSettings(data.defaults, builtInDefaults);
  const jobs = new Map<string, JobConfig>();
  for (const [name, job] of Object.entries(data.jobs ?? {})) jobs.set(name, resolveJob(name, job, defaults, configDir));

  const alerts: AlertConfig[] = (data.alerts ?? []).map((alert) => {
    const resolved: AlertConfig = {
      on: [...new Set(alert.on)],
      timeout: durationValue(alert.timeout, alertDefaults.timeout),
      retries: alert.retries ?? alertDefaults.retries,
    };
    if (alert.command) resolved.command = alert.command;
    if (alert.webhook !== undefined) resolved.webhook = alert.webhook;
    return resolved;
  });

  return {
    file,
    state_dir: stateDir,
    warehouse: data.warehouse !== undefined ? path.resolve(configDir, data.warehouse) : path.join(stateDir, 'warehouse.duckdb'),
    concurrency: data.concurrency ?? defaultConcurrency,
    control,
    recovery: data.recovery ?? 'kill',
    history: { keep_runs: data.history?.keep_runs ?? historyDefaults.keep_runs, keep_days: data.history?.keep_days ?? historyDefaults.keep_days },
    defaults,
    jobs,
    alerts,
  };
}

// ---- diff ----------------------------------------------------------------------------------

const sizeKeys = new Set(['limits.rss', 'limits.swap', 'limits.disk_free_min']);
const durationKeys = new Set([
  'heartbeat_timeout',
  'stall_timeout',
  'max_runtime',
  'stop_grace',
  'sample_interval',
  'thrash_window',
  'retries.backoff',
  'retries.max_backoff',
  'timeout',
]);

/** Formats milliseconds the way a config would say them: 250ms, 10s, 5m, 1h30m. */
function configDuration(ms: number): string {
  if (ms === 0) return 'none';
  const units: Array<[string, number]> = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
    ['ms', 1],
  ];
  let rest = ms;
  let out = '';
  for (const [unit, size] of units) {
    const count = Math.floor(rest / size);
    if (count > 0) {
      out += `${count}${unit}`;
      rest -= count * size;
    }
  }
  return out || `${ms}ms`;
}

function formatSetting(key: string, value: unknown): string {
  if (value === undefined) return 'unset';
  if (sizeKeys.has(key) && typeof value === 'number') return formatBytes(value).replace(/\.0 /, ' ');
  if (durationKeys.has(key) && typeof value === 'number') return configDuration(value);
  if (Array.isArray(value)) return `[${value.map((item) => (typeof item === 'string' ? item : JSON.stringify(item))).join(', ')}]`;
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** Flattens nested settings into dotted keys; arrays and free-form maps stay whole. */
function flatten(value: Record<string, unknown>, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  for (const [key, inner] of Object.entries(value)) {
    const dotted = prefix ? `${prefix}.${key}` : key;
    if (isRecord(inner) && (key === 'limits' || key === 'retries' || key === 'control' || key === 'history')) flatten(inner, dotted, out);
    else out.set(dotted, inner);
  }
  return out;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function changedLines(label: string, before: Map<string, unknown>, after: Map<string, unknown>, skip?: (key: string) => boolean): string[] {
  const lines: string[] = [];
  const keys = [...new Set([...before.keys(), ...after.keys()])];
  for (const key of keys) {
    if (skip?.(key)) continue;
    const oldValue = before.get(key);
    const newValue = after.get(key);
    if (sameValue(oldValue, newValue)) continue;
    lines.push(`${label}: ${key} ${formatSetting(key, oldValue)} → ${formatSetting(key, newValue)}`);
  }
  return lines;
}

function jobSettingsMap(job: JobConfig): Map<string, unknown> {
  const { name: _name, ...rest } = job;
  return flatten(rest as unknown as Record<string, unknown>);
}

/** Human lines describing what a reload changes, e.g. `job etl: limits.rss 512 MiB → 1 GiB`; empty when nothing does. */
export function diffConfigs(old: DaemonConfig, next: DaemonConfig): string[] {
  const lines: string[] = [];
  const top = (config: DaemonConfig) =>
    flatten({
      file: config.file,
      state_dir: config.state_dir,
      warehouse: config.warehouse,
      concurrency: config.concurrency,
      recovery: config.recovery,
      ...(config.history ? { history: config.history } : {}),
      control: { ...config.control, ...(config.control.http_token ? { http_token: '(secret)' } : {}) },
    });
  const oldTop = top(old);
  const newTop = top(next);
  if (old.control.http_token !== next.control.http_token && old.control.http_token && next.control.http_token) {
    oldTop.set('control.http_token', '(old secret)');
    newTop.set('control.http_token', '(new secret)');
  }
  lines.push(...changedLines('config', oldTop, newTop));

  const oldDefaults = flatten(old.defaults as unknown as Record<string, unknown>);
  const newDefaults = flatten(next.defaults as unknown as Record<string, unknown>);
  lines.push(...changedLines('defaults', oldDefaults, newDefaults));

  for (const name of old.jobs.keys()) if (!next.jobs.has(name)) lines.push(`job ${name} removed`);
  for (const [name, job] of next.jobs) {
    const previous = old.jobs.get(name);
    if (!previous) {
      lines.push(`job ${name} added`);
      continue;
    }
    // A job that simply follows a changed default is explained by the `defaults:` line already.
    const followsDefaults = (key: string) =>
      oldDefaults.has(key) &&
      sameValue(jobSettingsMap(previous).get(key), oldDefaults.get(key)) &&
      sameValue(jobSettingsMap(job).get(key), newDefaults.get(key));
    lines.push(...changedLines(`job ${name}`, jobSettingsMap(previous), jobSettingsMap(job), followsDefaults));
  }

  const alertText = (alerts: AlertConfig[]) => alerts.map((alert) => JSON.stringify(alert));
  const oldAlerts = alertText(old.alerts);
  const newAlerts = alertText(next.alerts);
  for (const alert of oldAlerts) if (!newAlerts.includes(alert)) lines.push(`alert removed: ${describeAlert(JSON.parse(alert) as AlertConfig)}`);
  for (const alert of newAlerts) if (!oldAlerts.includes(alert)) lines.push(`alert added: ${describeAlert(JSON.parse(alert) as AlertConfig)}`);
  return lines;
}

function describeAlert(alert: AlertConfig): string {
  const target = alert.webhook ?? alert.command?.join(' ') ?? '?';
  return `on [${alert.on.join(', ')}] → ${target} (timeout ${configDuration(alert.timeout)}, retries ${alert.retries})`;
}
