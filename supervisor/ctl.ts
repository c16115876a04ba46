// `duckvisorctl`: the operator's client of the control API (HTTP/JSON over the daemon's unix socket),
// supervisorctl-style verbs with readable tables, and `--json` on every verb for scripts.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError, loadConfig, resolveConfigPath } from './config.js';
import type { CycleView, JobStatus, RunDetail, StartResult, StatusView } from './control.js';
import { followRun } from './follow.js';
import type { RunView, SampleRow } from './history.js';
import { runTop } from './top.js';
import { formatBytes, formatDuration } from './units.js';

/** Exit codes: 0 ok, 1 the daemon refused or the run did not succeed, 2 usage, 3 daemon not reachable. */
export const ctlExit = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

const usage = `usage: duckvisorctl [--socket PATH | --config FILE] [--json] VERB [ARGS]

verbs:
  status                                   every job: state, progress, rate, ETA, RSS/limit, uptime, next retry
  top                                      live view of every job (q to quit)
  start JOB [--with-deps] [--follow]       queue a run now (--follow: its progress bar, rate, ETA and RSS until
                                           it ends; exit 0 only if it succeeded);
                                           --with-deps: run the job's dependencies (after:) first, then the job
  stop JOB|RUN                             stop the live run (reason operator) and cancel queued ones
  restart JOB                              stop, then start again
  history [JOB] [--limit N] [--state S] [--reason R]
  show RUN                                 one run: fields, peaks, kill reason, RSS sparkline, last events
  tail RUN [-f]                            the run's log (-f: follow until the run ends)
  reload                                   re-read the config; prints the changes (refused if invalid)
  shutdown                                 stop every run gracefully and exit the daemon
  lint [PATH...] [--json]                  static checks of extractor code (no daemon needed; see docs/lint.md)
`;

interface Options {
  socket?: string;
  config?: string;
  json: boolean;
  follow: boolean;
  withDeps: boolean;
  limit?: number;
  state?: string;
  reason?: string;
  positional: string[];
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const options: Options = { json: false, follow: false, withDeps: false, positional: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      const v = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${name} needs a value`);
      return v;
    };
    switch (name) {
      case '--socket':
        options.socket = value();
        break;
      case '--config':
        options.config = value();
        break;
      case '--json':
        options.json = true;
        break;
      case '--follow':
      case '-f':
        options.follow = true;
        break;
      case '--with-deps':
        options.withDeps = true;
        break;
      case '--limit': {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`--limit must be a positive integer, got '${v}'`);
        options.limit = Number(v);
        break;
      }
      case '--state':
        options.state = value();
        break;
      case '--reason':
        options.reason = value();
        break;
      case '--help':
      case '-h':
        throw new UsageError('');
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option '${arg}'`);
        options.positional.push(arg);
    }
  }
  return options;
}

/** Finds the control socket: --socket, else --config's control.socket, else the daemon's own config lookup. */
export function findSocket(options: { socket?: string; config?: string }, env: NodeJS.ProcessEnv = process.env): string {
  if (options.socket) return options.socket;
  const file = resolveConfigPath(options.config, env);
  try {
    return loadConfig(file, env).control.socket;
  } catch (error) {
    // A config being edited may be invalid elsewhere; the socket is still needed (e.g. to run `reload`
    // and see the daemon's verdict). Take control.socket alone when it is readable.
    const socket = socketFromInvalidConfig(file);
    if (socket !== undefined) return socket;
    throw error;
  }
}

function socketFromInvalidConfig(file: string): string | undefined {
  try {
    const doc = parseYaml(readFileSync(file, 'utf8')) as { control?: { socket?: unknown } } | null;
    const socket = doc?.control?.socket;
    return typeof socket === 'string' && socket !== '' ? path.resolve(path.dirname(file), socket) : undefined;
  } catch {
    return undefined;
  }
}

class NotRunningError extends Error {}
class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function request(socketPath: string, method: string, path: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, headers: { accept: 'application/json' } }, resolve);
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED' || error.code === 'ENOTSOCK') {
        reject(new NotRunningError(`duckvisord is not running (no socket at ${socketPath})`));
      } else if (error.code === 'EACCES') {
        reject(new NotRunningError(`permission denied on ${socketPath}: run duckvisorctl as the daemon's user`));
      } else reject(error);
    });
    req.end();
  });
}

async function readBody(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function call<T>(socketPath: string, method: string, path: string): Promise<T> {
  const res = await request(socketPath, method, path);
  const text = await readBody(res);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(res.statusCode ?? 500, `the daemon answered with non-JSON (HTTP ${res.statusCode}): ${text.slice(0, 200)}`);
  }
  if ((res.statusCode ?? 500) >= 400) throw new ApiError(res.statusCode ?? 500, (body as { error?: string }).error ?? `HTTP ${res.statusCode}`);
  return body as T;
}

async function streamLog(socketPath: string, runId: string, follow: boolean, out: NodeJS.WritableStream): Promise<void> {
  const res = await request(socketPath, 'GET', `/v1/runs/${encodeURIComponent(runId)}/log${follow ? '?follow=1' : ''}`);
  if ((res.statusCode ?? 500) >= 400) {
    const text = await readBody(res);
    let message = text;
    try {
      message = (JSON.parse(text) as { error: string }).error;
    } catch {
      // keep text
    }
    throw new ApiError(res.statusCode ?? 500, message);
  }
  for await (const chunk of res) out.write(chunk as Buffer);
}

// ------------------------------------------------------------------ human formatting

/** Lays out rows as aligned columns (last column unpadded). */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

function since(iso: string | null, now = Date.now()): string {
  return iso ? formatDuration(now - Date.parse(iso)) : '-';
}

function shortTime(iso: string | null): string {
  if (!iso) return '-';
  const d = new Date(iso);
  const sameDay = new Date().toDateString() === d.toDateString();
  return sameDay ? d.toTimeString().slice(0, 8) : d.toISOString().replace('T', ' ').slice(0, 19);
}

function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** "done/total unit (pct%)" or "-". */
export function formatProgress(run: Pick<RunView, 'progress_done' | 'progress_total' | 'progress_unit'>): string {
  if (run.progress_done === null) return '-';
  const unit = run.progress_unit ? ` ${run.progress_unit}` : '';
  if (run.progress_total !== null && run.progress_total > 0) {
    const pct = ((run.progress_done / run.progress_total) * 100).toFixed(1);
    return `${formatNumber(run.progress_done)}/${formatNumber(run.progress_total)}${unit} (${pct}%)`;
  }
  return `${formatNumber(run.progress_done)}${unit}`;
}

function stateText(run: RunView | null, waitingFor?: string[] | null): string {
  if (waitingFor) return 'waiting';
  if (!run) return 'never run';
  return run.reason ? `${run.state} (${run.reason})` : run.state;
}

function formatStatus(status: StatusView): string {
  const now = Date.now();
  const rows = status.jobs.map((job: JobStatus) => {
    const run = job.run;
    const live = run !== null && ['starting', 'running', 'publishing'].includes(run.state);
    const rss = job.rss_bytes ?? (run ? run.peak_rss_bytes : null);
    const rssText = `${live ? formatBytes(rss) : run && run.peak_rss_bytes ? 'peak ' + formatBytes(run.peak_rss_bytes) : '-'}/${job.rss_limit_bytes ? formatBytes(job.rss_limit_bytes) : '∞'}`;
    const next = job.queued?.next_attempt_at ?? job.queued?.queued_at ?? null;
    const note = job.waiting_for ? `waiting for: ${job.waiting_for.join(', ')}` : run?.status_note ?? (live ? '' : run?.detail ?? '');
    return [
      job.job + (job.in_config ? '' : ' (removed)'),
      stateText(run, job.waiting_for),
      run?.id ?? '-',
      run ? formatProgress(run) : '-',
      job.rate !== null ? `${formatNumber(job.rate)}/s` : '-',
      job.eta_ms !== null ? formatDuration(job.eta_ms) : '-',
      rssText,
      live ? formatDuration(job.uptime_ms) : run?.ended_at ? `ended ${since(run.ended_at, now)} ago` : '-',
      job.queued ? `${job.queued.attempt > 1 ? 'retry' : 'start'} ${shortTime(next)}` : job.next_scheduled_at ? `cron ${shortTime(job.next_scheduled_at)}` : '-',
      note.replace(/\s+/g, ' ').slice(0, 70),
    ];
  });
  const d = status.daemon;
  const head = `duckvisord pid ${d.pid}, up ${since(d.started_at, now)}, ${d.live} live / concurrency ${d.concurrency}, ${d.queued} queued${d.shutting_down ? ', SHUTTING DOWN' : ''}\n`;
  return head + table(['JOB', 'STATE', 'RUN', 'PROGRESS', 'RATE', 'ETA', 'RSS/LIMIT', 'UPTIME', 'NEXT', 'NOTE'], rows);
}

function formatHistory(runs: RunView[]): string {
  return table(
    ['RUN', 'JOB', 'ATT', 'STATE', 'STARTED', 'DURATION', 'PEAK RSS', 'PROGRESS', 'ROWS', 'DETAIL'],
    runs.map((run) => [
      run.id,
      run.job,
      String(run.attempt),
      stateText(run),
      shortTime(run.started_at),
      run.started_at ? formatDuration((run.ended_at ? Date.parse(run.ended_at) : Date.now()) - Date.parse(run.started_at)) : '-',
      formatBytes(run.peak_rss_bytes),
      formatProgress(run),
      run.rows_written === null ? '-' : String(run.rows_written),
      (run.detail ?? '').replace(/\s+/g, ' ').slice(0, 60),
    ]),
  );
}

const sparkChars = '▁▂▃▄▅▆▇█';

/** A one-line chart of values, bucketed to `width` columns (max of each bucket). */
export function sparkline(values: number[], width = 60): string {
  if (values.length === 0) return '';
  const buckets: number[] = [];
  const per = Math.max(1, values.length / width);
  for (let start = 0; start < values.length; start += per) {
    const slice = values.slice(Math.floor(start), Math.max(Math.floor(start) + 1, Math.floor(start + per)));
    buckets.push(Math.max(...slice));
  }
  const max = Math.max(...buckets);
  const min = Math.min(...buckets);
  const span = max - min || 1;
  return buckets.map((v) => sparkChars[Math.min(sparkChars.length - 1, Math.floor(((v - min) / span) * sparkChars.length))]).join('');
}

function formatShow(detail: RunDetail): string {
  const run = detail.run;
  const lines: string[] = [];
  const field = (name: string, value: string | number | null | undefined) => lines.push(`${(name + ':').padEnd(16)} ${value === null || value === undefined || value === '' ? '-' : value}`);
  field('run', run.id);
  field('job', run.job);
  field('attempt', `${run.attempt} (chain ${run.chain_id})`);
  field('state', stateText(run));
  field('detail', run.detail);
  if (run.status_note) field('note', run.status_note);
  field('pid', run.pid);
  field('queued', run.queued_at);
  field('started', run.started_at);
  field('ended', run.ended_at);
  if (run.started_at) field('duration', formatDuration((run.ended_at ? Date.parse(run.ended_at) : Date.now()) - Date.parse(run.started_at)));
  field('exit', run.signal ? `signal ${run.signal}` : run.exit_code);
  field('peak rss', formatBytes(run.peak_rss_bytes));
  field('peak swap', formatBytes(run.peak_swap_bytes));
  field('progress', formatProgress(run));
  field('rows written', run.rows_written);
  field('bad messages', run.bad_messages);
  field('next attempt', run.next_attempt_at);
  field('staging', run.staging_path);
  field('log', run.log_path);
  const kill = [...detail.events].reverse().find((event) => event.kind === 'kill');
  if (kill) {
    const reason = (JSON.parse(kill.data_json ?? '{}') as { reason?: string }).reason ?? run.reason;
    const isBytes = reason === 'memory' || reason === 'swap' || reason === 'disk';
    const fmt = (v: number | null) => (v === null ? '-' : isBytes ? formatBytes(v) : reason === 'thrash' ? `${formatNumber(v)}/s` : formatDuration(v));
    field('kill', kill.measured === null ? `${reason}: ${kill.message.replace(/^.*?: /, '')}` : `${reason}: measured ${fmt(kill.measured)} vs limit ${fmt(kill.limit_value)}`);
  }
  const samples: SampleRow[] = detail.samples;
  if (samples.length > 0) {
    const rss = samples.map((s) => s.rss);
    lines.push('');
    lines.push(`RSS over time (${samples.length} samples, ${formatBytes(Math.min(...rss))} .. ${formatBytes(Math.max(...rss))}):`);
    lines.push('  ' + sparkline(rss));
  }
  const events = detail.events.slice(-15);
  if (events.length > 0) {
    lines.push('');
    lines.push('last events:');
    for (const event of events) {
      const measured = event.measured !== null ? ` [measured ${event.measured}${event.limit_value !== null ? `, limit ${event.limit_value}` : ''}]` : '';
      const text = event.message.split('\n');
      lines.push(`  ${shortTime(event.at)}  ${event.kind.padEnd(12)} ${text[0]}${measured}`);
      for (const more of text.slice(1, 8)) lines.push(`  ${' '.repeat(8)}  ${' '.repeat(12)} ${more}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** One line per member of a cycle: its state, or what it waits for. */
function formatCycle(cycle: CycleView): string {
  const head = `cycle ${cycle.id} (${cycle.kind}${cycle.root ? ` of ${cycle.root}` : ''}): ${cycle.members.map((m) => m.job).join(' → ')}${cycle.outcome ? ` — ${cycle.outcome}` : ''}\n`;
  return (
    head +
    table(
      ['JOB', 'STATE', 'RUN', 'DETAIL'],
      cycle.members.map((member) => [
        member.job,
        member.waiting_for ? 'waiting' : stateText(member.run),
        member.run?.id ?? '-',
        (member.waiting_for ? `waiting for: ${member.waiting_for.join(', ')}` : member.run?.detail ?? '').replace(/\s+/g, ' ').slice(0, 80),
      ]),
    )
  );
}

/** `start --with-deps`: prints the cycle; with --follow, reports each member as it ends until the cycle is over. */
async function startedCycle(options: Options, socket: string, job: string, cycle: CycleView, out: NodeJS.WritableStream): Promise<number> {
  if (!options.follow) {
    out.write(options.json ? JSON.stringify({ run: cycle.members.find((m) => m.job === job)?.run ?? null, cycle, warning: null }, null, 2) + '\n' : formatCycle(cycle));
    return ctlExit.ok;
  }
  if (!options.json) out.write(`cycle ${cycle.id}: ${cycle.members.map((m) => m.job).join(' → ')}\n`);
  const reported = new Set<string>();
  let current = cycle;
  for (;;) {
    for (const member of current.members) {
      const run = member.run;
      if (!run || reported.has(run.id) || !['succeeded', 'failed', 'killed', 'interrupted', 'skipped'].includes(run.state)) continue;
      reported.add(run.id);
      if (!options.json) out.write(`${member.job}: run ${run.id} ${stateText(run)}${run.detail ? ': ' + run.detail : ''}\n`);
    }
    if (current.ended_at) break;
    await new Promise((resolve) => setTimeout(resolve, 300));
    current = await call<CycleView>(socket, 'GET', `/v1/cycles/${encodeURIComponent(cycle.id)}`);
  }
  if (options.json) out.write(JSON.stringify({ cycle: current }, null, 2) + '\n');
  else out.write(`cycle ${current.id} ${current.outcome}\n`);
  const target = current.members.find((m) => m.job === job)?.run;
  return target?.state === 'succeeded' ? ctlExit.ok : ctlExit.failed;
}

// ------------------------------------------------------------------ verbs

function one(options: Options, what: string): string {
  if (options.positional.length !== 2) throw new UsageError(`${options.positional[0]} needs exactly one ${what}`);
  return options.positional[1]!;
}

async function runVerb(options: Options, socket: string, out: NodeJS.WritableStream): Promise<number> {
  const verb = options.positional[0];
  const print = (json: unknown, human: () => string) => out.write(options.json ? JSON.stringify(json, null, 2) + '\n' : human());
  const enc = encodeURIComponent;
  switch (verb) {
    case 'status': {
      if (options.positional.length !== 1) throw new UsageError('status takes no arguments');
      const status = await call<StatusView>(socket, 'GET', '/v1/status');
      print(status, () => formatStatus(status));
      return ctlExit.ok;
    }
    case 'top':
      if (options.positional.length !== 1) throw new UsageError('top takes no arguments');
      return runTop(() => call<StatusView>(socket, 'GET', '/v1/status'), { json: options.json });
    case 'start': {
      const job = one(options, 'JOB');
      const started = await call<StartResult>(socket, 'POST', `/v1/jobs/${enc(job)}/start${options.withDeps ? '?with_deps=1' : ''}`);
      if (started.warning && !options.json) process.stderr.write(`duckvisorctl: warning: ${job}: ${started.warning}\n`);
      if (started.cycle) return startedCycle(options, socket, job, started.cycle, out);
      const run = started.run!;
      if (!options.follow) {
        print(started, () => `${job}: queued as run ${run.id}\n`);
        return ctlExit.ok;
      }
      if (!options.json) out.write(`${job}: run ${run.id}\n`);
      return followRun(
        run.id,
        { status: () => call<StatusView>(socket, 'GET', '/v1/status'), run: async (id) => (await call<RunDetail>(socket, 'GET', `/v1/runs/${enc(id)}`)).run },
        { json: options.json, out },
      );
    }
    case 'stop': {
      const target = one(options, 'JOB or RUN');
      // A run id has a timestamp prefix; anything else is a job name.
      const isRun = /^\d{8}-\d{6}-\d{3}-/.test(target);
      const body = isRun
        ? { runs: [(await call<{ run: RunView }>(socket, 'POST', `/v1/runs/${enc(target)}/stop`)).run] }
        : await call<{ runs: RunView[] }>(socket, 'POST', `/v1/jobs/${enc(target)}/stop`);
      print(body, () => body.runs.map((run) => `${run.job}: run ${run.id} ${stateText(run)}\n`).join(''));
      return ctlExit.ok;
    }
    case 'restart': {
      const job = one(options, 'JOB');
      const body = await call<{ run: RunView }>(socket, 'POST', `/v1/jobs/${enc(job)}/restart`);
      print(body, () => `${job}: restarted, queued as run ${body.run.id}\n`);
      return ctlExit.ok;
    }
    case 'history': {
      if (options.positional.length > 2) throw new UsageError('history takes at most one JOB');
      const query = new URLSearchParams();
      if (options.positional[1]) query.set('job', options.positional[1]);
      query.set('limit', String(options.limit ?? 20));
      if (options.state) query.set('state', options.state);
      if (options.reason) query.set('reason', options.reason);
      const body = await call<{ runs: RunView[] }>(socket, 'GET', `/v1/history?${query}`);
      print(body.runs, () => formatHistory(body.runs));
      return ctlExit.ok;
    }
    case 'show': {
      const id = one(options, 'RUN');
      const detail = await call<RunDetail>(socket, 'GET', `/v1/runs/${enc(id)}`);
      print({ ...detail.run, samples: detail.samples, events: detail.events }, () => formatShow(detail));
      return ctlExit.ok;
    }
    case 'tail': {
      const id = one(options, 'RUN');
      if (options.json) {
        // JSON mode: the whole log so far as one string (follow is not meaningful for a single document).
        const res = await request(socket, 'GET', `/v1/runs/${enc(id)}/log`);
        const text = await readBody(res);
        if ((res.statusCode ?? 500) >= 400) throw new ApiError(res.statusCode ?? 500, (JSON.parse(text) as { error: string }).error);
        out.write(JSON.stringify({ run: id, log: text }) + '\n');
        return ctlExit.ok;
      }
      await streamLog(socket, id, options.follow, out);
      return ctlExit.ok;
    }
    case 'reload': {
      if (options.positional.length !== 1) throw new UsageError('reload takes no arguments');
      const body = await call<{ changes: string[]; file: string }>(socket, 'POST', '/v1/reload');
      print(body, () => (body.changes.length ? `reloaded ${body.file}:\n${body.changes.map((c) => '  ' + c).join('\n')}\n` : `reloaded ${body.file}: no changes\n`));
      return ctlExit.ok;
    }
    case 'shutdown': {
      if (options.positional.length !== 1) throw new UsageError('shutdown takes no arguments');
      const body = await call<{ ok: boolean; message: string }>(socket, 'POST', '/v1/shutdown');
      print(body, () => `${body.message}\n`);
      return ctlExit.ok;
    }
    default:
      throw new UsageError(verb === undefined ? 'no verb given' : `unknown verb '${verb}'`);
  }
}

/** Entry point of bin/duckvisorctl.js; sets process.exitCode. */
export async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'lint') {
    // The static guardrail needs no daemon; loaded lazily because it pulls in the TypeScript compiler.
    const { runLint } = await import('./lint/index.js');
    process.exitCode = await runLint(argv.slice(1));
    return;
  }
  let options: Options;
  try {
    options = parseArgs(argv);
    if (options.positional.length === 0) throw new UsageError('no verb given');
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message ? `duckvisorctl: ${error.message}\n\n` : ''}${usage}`);
      process.exitCode = error.message ? ctlExit.usage : ctlExit.ok;
      return;
    }
    throw error;
  }
  let socket: string;
  try {
    socket = findSocket(options);
  } catch (error) {
    const message = error instanceof ConfigError ? error.message : error instanceof Error ? error.message : String(error);
    process.stderr.write(`duckvisorctl: cannot find the daemon's socket (pass --socket PATH or --config FILE):\n${message}\n`);
    process.exitCode = ctlExit.unreachable;
    return;
  }
  try {
    process.exitCode = await runVerb(options, socket, process.stdout);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`duckvisorctl: ${error.message}\n\n${usage}`);
      process.exitCode = ctlExit.usage;
    } else if (error instanceof NotRunningError) {
      process.stderr.write(`duckvisorctl: ${error.message}\n`);
      process.exitCode = ctlExit.unreachable;
    } else if (error instanceof ApiError) {
      if (options.json) process.stdout.write(JSON.stringify({ error: error.message, status: error.status }) + '\n');
      process.stderr.write(`duckvisorctl: ${error.message}\n`);
      process.exitCode = ctlExit.failed;
    } else {
      process.stderr.write(`duckvisorctl: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
      process.exitCode = ctlExit.failed;
    }
  }
}
