// Alert hooks: tell a human within seconds when a job was killed, failed, gave up retrying, or is about to.
//
// Each configured alert is a command (argv, executed directly, never through a shell; the event arrives as
// JSON on stdin and as DUCKVISOR_* variables) or a webhook (JSON POST with a Slack-compatible `text`).
// Deliveries run outside the supervision loop, with the alert's timeout (a hung command's whole process
// group is SIGKILLed), and are retried with exponential backoff. Every attempt, good or bad, is reported
// to `record`, which the daemon stores as an event in history.
//
// How the daemon uses it (call sites):
//   const alerts = new AlertDispatcher(config.alerts, (delivery) => {
//     history.addEvent(runId?, 'alert', delivery);  metrics.recordAlert(delivery.ok);  // whatever it stores
//   });
//   alerts.dispatch('killed', { job, run, attempt, reason, detail, measured, limit, progress, logTail });
//       // on each run end / warning; returns at once; `logTail` = the run log's last lines (20 are kept)
//   alerts.setConfig(newConfig.alerts);      // on reload
//   await alerts.drain(5000);                // on shutdown: waits, then kills what is still running
import os from 'node:os';
import { execa, type ResultPromise } from 'execa';
import type { AlertConfig, AlertEventKind } from './types.js';
import { stripSystemdEnv } from './notify.js';
import { formatBytes, formatDuration } from './units.js';

/** How many log lines an alert carries. */
export const alertLogLines = 20;

/** What the daemon knows about the run an alert is about. */
export interface AlertPayload {
  job: string;
  run: string | null;
  attempt: number | null;
  /** Kill reason, 'crash', or the warning kind; null for e.g. `succeeded`. */
  reason: string | null;
  /** One human line (e.g. "rss 1.2 GiB > 1 GiB for 2 samples"). */
  detail?: string | null;
  /** Measured value at the decision (bytes, ms, faults/s according to reason). */
  measured?: number | null;
  limit?: number | null;
  progress?: { done: number; total?: number | null; unit: string } | null;
  /** The run log's last lines; only the last 20 are sent. */
  logTail?: string[];
  /** ms since epoch; defaults to now. */
  at?: number;
}

/** The JSON document every hook receives (stdin / POST body). */
export interface AlertEvent {
  event: AlertEventKind;
  job: string;
  run: string | null;
  attempt: number | null;
  reason: string | null;
  detail: string | null;
  measured: number | null;
  limit: number | null;
  last_progress: { done: number; total: number | null; unit: string } | null;
  log_tail: string[];
  host: string;
  time: string;
  /** One line for chat tools (Slack/Mattermost webhooks show `text`). */
  text: string;
}

/** One delivery attempt, as reported to the daemon's `record` callback. */
export interface AlertDelivery {
  kind: AlertEventKind;
  /** Which alert: "command: /usr/local/bin/x" or "webhook: https://host/path" (no query string). */
  alert: string;
  ok: boolean;
  /** "exit 0", "HTTP 200", "timed out after 10s; process group killed", "… will retry in 2s", … */
  detail: string;
  /** 1 for the first try of this delivery, 2 for the first retry, … */
  attempt: number;
}

/** Which job and run a delivery is about; the second argument of the `record` callback. */
export interface AlertSubject {
  job: string;
  run: string | null;
}

export interface AlertDispatcherOptions {
  /** Base environment for command hooks (systemd variables are always removed). Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  host?: string;
  /** First retry delay (ms); doubles per retry. */
  backoff?: number;
  maxBackoff?: number;
  /** Deliveries running at once; more wait in a queue. */
  maxConcurrent?: number;
  /** Deliveries waiting beyond this are dropped (and recorded as failed). */
  maxQueued?: number;
}

interface Delivery {
  kind: AlertEventKind;
  alert: AlertConfig;
  event: AlertEvent;
}

/** Builds the event document, including the Slack-compatible `text` line. */
export function buildAlertEvent(kind: AlertEventKind, payload: AlertPayload, host: string = os.hostname()): AlertEvent {
  const progress = payload.progress ? { done: payload.progress.done, total: payload.progress.total ?? null, unit: payload.progress.unit } : null;
  const event: Omit<AlertEvent, 'text'> = {
    event: kind,
    job: payload.job,
    run: payload.run,
    attempt: payload.attempt,
    reason: payload.reason,
    detail: payload.detail ?? null,
    measured: payload.measured ?? null,
    limit: payload.limit ?? null,
    last_progress: progress,
    log_tail: (payload.logTail ?? []).slice(-alertLogLines),
    host,
    time: new Date(payload.at ?? Date.now()).toISOString(),
  };
  return { ...event, text: alertText(event) };
}

/** Renders a measured value in the unit its reason implies. */
export function formatMeasure(reason: string | null, value: number): string {
  switch (reason) {
    case 'memory':
    case 'swap':
    case 'disk':
      return formatBytes(value);
    case 'heartbeat':
    case 'stalled':
    case 'timeout':
      return formatDuration(value);
    case 'thrash':
      return `${Math.round(value)} major faults/s`;
    default:
      return String(value);
  }
}

function alertText(event: Omit<AlertEvent, 'text'>): string {
  const run = event.run ? ` run ${event.run}${event.attempt !== null ? ` (attempt ${event.attempt})` : ''}` : '';
  let text = `[duckvisor@${event.host}] job ${event.job}${run}: ${event.event}`;
  if (event.reason) text += ` (${event.reason})`;
  if (event.measured !== null) {
    text += `: ${formatMeasure(event.reason, event.measured)}`;
    if (event.limit !== null) text += ` vs limit ${formatMeasure(event.reason, event.limit)}`;
  }
  if (event.detail) text += ` - ${event.detail}`;
  if (event.last_progress) {
    const p = event.last_progress;
    text += `; progress ${p.done}${p.total !== null ? `/${p.total}` : ''} ${p.unit}`;
  }
  return text;
}

/** The DUCKVISOR_* variables a command hook receives (empty strings for unknown values). */
export function alertEnvironment(event: AlertEvent): Record<string, string> {
  const text = (value: unknown) => (value === null || value === undefined ? '' : String(value));
  return {
    DUCKVISOR_EVENT: event.event,
    DUCKVISOR_JOB: event.job,
    DUCKVISOR_RUN_ID: text(event.run),
    DUCKVISOR_ATTEMPT: text(event.attempt),
    DUCKVISOR_REASON: text(event.reason),
    DUCKVISOR_MEASURED: text(event.measured),
    DUCKVISOR_LIMIT: text(event.limit),
    DUCKVISOR_HOST: event.host,
    DUCKVISOR_TEXT: event.text,
  };
}

/** Names an alert in records without leaking webhook secrets (query strings, credentials). */
export function describeAlert(alert: AlertConfig): string {
  if (alert.command) return `command: ${alert.command[0] ?? '(empty)'}`;
  try {
    const url = new URL(alert.webhook ?? '');
    return `webhook: ${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return 'webhook: (invalid URL)';
  }
}

/** Why: alerts must reach people without ever slowing or endangering the supervision loop. */
export class AlertDispatcher {
  #config: AlertConfig[];
  readonly #record: (delivery: AlertDelivery, subject: AlertSubject) => void;
  readonly #env: Record<string, string>;
  readonly #host: string;
  readonly #backoff: number;
  readonly #maxBackoff: number;
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  readonly #queue: Delivery[] = [];
  readonly #running = new Set<Promise<void>>();
  /** Process group leaders of command hooks now running. */
  readonly #hooks = new Set<number>();
  readonly #aborts = new Set<AbortController>();
  #draining = false;

  constructor(config: AlertConfig[], record: (delivery: AlertDelivery, subject: AlertSubject) => void, options: AlertDispatcherOptions = {}) {
    this.#config = config;
    this.#record = record;
    this.#env = stripSystemdEnv(options.env ?? process.env);
    this.#host = options.host ?? os.hostname();
    this.#backoff = options.backoff ?? 1000;
    this.#maxBackoff = options.maxBackoff ?? 60_000;
    this.#maxConcurrent = options.maxConcurrent ?? 4;
    this.#maxQueued = options.maxQueued ?? 500;
  }

  /** Replaces the alert list for future events (reload); deliveries already started finish as configured. */
  setConfig(config: AlertConfig[]): void {
    this.#config = config;
  }

  /** Deliveries queued or running. */
  get pending(): number {
    return this.#queue.length + this.#running.size;
  }

  /** Sends `kind` to every alert subscribed to it; returns at once with how many deliveries were scheduled. */
  dispatch(kind: AlertEventKind, payload: AlertPayload): number {
    if (this.#draining) return 0;
    const targets = this.#config.filter((alert) => alert.on.includes(kind));
    if (targets.length === 0) return 0;
    const event = buildAlertEvent(kind, payload, this.#host);
    for (const alert of targets) {
      if (this.#queue.length >= this.#maxQueued) {
        this.#report({ kind, alert: describeAlert(alert), ok: false, attempt: 0, detail: `dropped: ${this.#queue.length} alert deliveries already waiting` }, event);
        continue;
      }
      this.#queue.push({ kind, alert, event });
    }
    setImmediate(() => this.#pump());
    return targets.length;
  }

  /**
   * Shutdown: waits up to `ms` for deliveries to finish, then kills running hooks (process groups), aborts
   * webhooks and drops the queue. Resolves with how many deliveries did not complete.
   */
  async drain(ms: number): Promise<number> {
    this.#draining = true;
    const deadline = Date.now() + ms;
    while (this.pending > 0 && Date.now() < deadline) {
      this.#pump();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([...this.#running, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.min(100, deadline - Date.now()))))]);
      clearTimeout(timer);
    }
    const unfinished = this.pending;
    for (const dropped of this.#queue.splice(0)) {
      this.#report({ kind: dropped.kind, alert: describeAlert(dropped.alert), ok: false, attempt: 0, detail: 'dropped: daemon shutting down' }, dropped.event);
    }
    for (const pid of this.#hooks) killGroup(pid);
    for (const controller of this.#aborts) controller.abort(new Error('daemon shutting down'));
    await Promise.all([...this.#running]);
    return unfinished;
  }

  #pump(): void {
    while (this.#running.size < this.#maxConcurrent && this.#queue.length > 0) {
      const delivery = this.#queue.shift()!;
      const task = this.#deliver(delivery).finally(() => {
        this.#running.delete(task);
        if (this.#queue.length > 0) setImmediate(() => this.#pump());
      });
      this.#running.add(task);
    }
  }

  async #deliver({ kind, alert, event }: Delivery): Promise<void> {
    const name = describeAlert(alert);
    const tries = Math.max(0, alert.retries) + 1;
    for (let attempt = 1; attempt <= tries; attempt++) {
      let result: { ok: boolean; detail: string };
      try {
        result = alert.command ? await this.#runCommand(alert, event) : await this.#postWebhook(alert, event);
      } catch (error) {
        result = { ok: false, detail: `delivery error: ${error instanceof Error ? error.message : String(error)}` };
      }
      const last = result.ok || attempt === tries || this.#draining;
      const delay = Math.min(this.#maxBackoff, this.#backoff * 2 ** (attempt - 1));
      let detail = result.detail;
      if (!result.ok) detail += last ? `; giving up after ${attempt} attempt${attempt === 1 ? '' : 's'}` : `; will retry in ${formatDuration(delay)}`;
      this.#report({ kind, alert: name, ok: result.ok, detail, attempt }, event);
      if (last) return;
      await this.#sleep(delay);
    }
  }

  #runCommand(alert: AlertConfig, event: AlertEvent): Promise<{ ok: boolean; detail: string }> {
    const [file, ...args] = alert.command ?? [];
    if (!file) return Promise.resolve({ ok: false, detail: 'alert command is empty' });
    return new Promise((resolve) => {
      let timedOut = false;
      let subprocess: ResultPromise;
      try {
        subprocess = execa(file, args, {
          input: JSON.stringify(event) + '\n',
          env: { ...this.#env, ...alertEnvironment(event) },
          extendEnv: false,
          // Own process group, so a timeout kills the hook and everything it started.
          detached: true,
          reject: false,
          stripFinalNewline: true,
          maxBuffer: 64 * 1024,
          all: true,
        });
      } catch (error) {
        resolve({ ok: false, detail: `cannot run ${file}: ${error instanceof Error ? error.message : String(error)}` });
        return;
      }
      const pid = subprocess.pid;
      if (pid !== undefined) this.#hooks.add(pid);
      const timer = setTimeout(() => {
        timedOut = true;
        if (pid !== undefined) killGroup(pid);
      }, alert.timeout);
      subprocess.then((result) => {
        clearTimeout(timer);
        if (pid !== undefined) this.#hooks.delete(pid);
        const output = tail(String(result.all ?? ''));
        if (timedOut) resolve({ ok: false, detail: `timed out after ${formatDuration(alert.timeout)}; process group killed` });
        else if (result.exitCode === 0) resolve({ ok: true, detail: 'exit 0' });
        else if (result.exitCode === undefined && !result.signal) resolve({ ok: false, detail: `cannot run ${file}: ${result.originalMessage ?? result.shortMessage}` });
        else resolve({ ok: false, detail: `exit ${result.exitCode ?? result.signal}${output ? `: ${output}` : ''}` });
      });
    });
  }

  async #postWebhook(alert: AlertConfig, event: AlertEvent): Promise<{ ok: boolean; detail: string }> {
    const controller = new AbortController();
    this.#aborts.add(controller);
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${formatDuration(alert.timeout)}`)), alert.timeout);
    try {
      const response = await fetch(alert.webhook!, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'duckvisor-alerts' },
        body: JSON.stringify(event),
        signal: controller.signal,
      });
      const body = tail(await response.text());
      if (response.ok) return { ok: true, detail: `HTTP ${response.status}` };
      return { ok: false, detail: `HTTP ${response.status}${body ? `: ${body}` : ''}` };
    } catch (error) {
      const reason = controller.signal.aborted ? controller.signal.reason : error;
      const cause = (error as { cause?: { message?: string } }).cause?.message;
      return { ok: false, detail: `${reason instanceof Error ? reason.message : String(reason)}${cause && !controller.signal.aborted ? ` (${cause})` : ''}` };
    } finally {
      clearTimeout(timer);
      this.#aborts.delete(controller);
    }
  }

  /** A backoff pause that drain() can cut short. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const controller = new AbortController();
      const finish = () => {
        clearTimeout(timer);
        this.#aborts.delete(controller);
        resolve();
      };
      const timer = setTimeout(finish, ms);
      controller.signal.addEventListener('abort', finish, { once: true });
      this.#aborts.add(controller);
    });
  }

  #report(delivery: AlertDelivery, event: AlertEvent): void {
    try {
      this.#record(delivery, { job: event.job, run: event.run });
    } catch {
      // The daemon's recorder failing must not break alerting.
    }
  }
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function tail(text: string, max = 500): string {
  const trimmed = text.trim();
  return trimmed.length > max ? '…' + trimmed.slice(-max) : trimmed;
}
