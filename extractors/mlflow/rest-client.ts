// HTTP for the tracking-server reader: MLflow's auth conventions (MLFLOW_TRACKING_TOKEN → Bearer,
// MLFLOW_TRACKING_USERNAME/PASSWORD → Basic), a timeout on every request, retries with exponential
// backoff and jitter on 429/5xx and network errors (Retry-After honoured), JSON errors that quote what
// the server actually sent, and a bounded number of requests in flight over kept-alive connections.
//
// node:http with a keep-alive agent rather than fetch: fetch costs ~50 ms to load on its first call and
// a few ms of CPU per request more, which adds up over thousands of metrics/get-history requests.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { EXTRA_CA_CERTS_ENV } from '../sdk/process-env.js';

export interface RestOptions {
  token?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** MLFLOW_TRACKING_INSECURE_TLS: skip certificate checks (for this client's connections only). */
  insecureTls?: boolean;
  /** Per-request timeout (until the whole JSON body, or a download's headers, arrived). Default 60 s (MLFLOW_HTTP_REQUEST_TIMEOUT seconds when set). */
  timeoutMs?: number;
  /** Attempts per request, including the first. Default 5 (MLFLOW_HTTP_REQUEST_MAX_RETRIES + 1). */
  attempts?: number;
  /** First backoff; doubled per retry, capped at 10 s. Default 500 ms. */
  backoffMs?: number;
  /** Requests in flight at once (each on its own kept-alive connection). Default 4. */
  maxInFlight?: number;
}

const RETRYABLE = new Set([429, 500, 502, 503, 504]);
/**
 * Requests on fresh connections start at least this far apart. A server's worker processes (mlflow
 * server --workers N, uvicorn) take new connections in bursts: the worker that wakes accepts every
 * connection pending, so pages sent together mostly landed on one worker while the other idled
 * (2 pages sent at once ran in parallel 3 times in 10); started 5-15 ms apart, the idle worker takes
 * the next one (7-8 times in 10).
 */
const FRESH_CONNECTION_SPACING_MS = 10;

export class RestError extends Error {
  override name = 'RestError';
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly url: string,
  ) {
    super(message);
  }
}

function truncate(text: string, max = 300): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * Plain Flask JSON (the /ajax-api metric endpoints) writes NaN and ±Infinity as bare tokens, which
 * JSON.parse rejects: rewrite those tokens outside strings as the strings protobuf JSON uses.
 */
export function parseLenientJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    if (!/NaN|Infinity/.test(text)) throw error;
  }
  let out = '';
  let from = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const char = text.charCodeAt(index);
    if (inString) {
      if (char === 92 /* \ */) index++;
      else if (char === 34 /* " */) inString = false;
      continue;
    }
    if (char === 34) {
      inString = true;
      continue;
    }
    for (const token of ['NaN', 'Infinity', '-Infinity']) {
      if (text.startsWith(token, index)) {
        out += `${text.slice(from, index)}"${token}"`;
        index += token.length - 1;
        from = index + 1;
        break;
      }
    }
  }
  return JSON.parse(out + text.slice(from));
}

/** A FIFO limit on concurrent work. */
class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.active--;
    }
  }
}

interface Answer {
  status: number;
  retryAfter: string | undefined;
  response: http.IncomingMessage;
}

/**
 * Node's own roots plus the certificates a built-in extractor was given in place of NODE_EXTRA_CA_CERTS
 * (process-env.ts), which Node would otherwise have added at start; undefined when there are none.
 * An unreadable file is a warning on stderr and the default roots are used, as Node does with NODE_EXTRA_CA_CERTS.
 */
function extraCertificateAuthorities(): string[] | undefined {
  const file = process.env[EXTRA_CA_CERTS_ENV];
  if (file === undefined || file === '') return undefined;
  try {
    return [...tls.rootCertificates, readFileSync(file, 'utf8')];
  } catch (error) {
    process.emitWarning(`${EXTRA_CA_CERTS_ENV} (from NODE_EXTRA_CA_CERTS): cannot read ${file} (${error instanceof Error ? error.message : String(error)}); using Node's default certificate authorities`);
    return undefined;
  }
}

// Why: every call of the REST reader goes through one client that owns auth, timeouts, retries and connections.
export class RestClient {
  readonly base: string;
  private readonly headers: Record<string, string> = { accept: 'application/json' };
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly agent: http.Agent;
  /** Connections used for one request each (see json's `freshConnection`). */
  private readonly freshAgent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly gate: Gate;
  private closed = false;
  /** When the last request on a fresh connection started (performance.now() time). */
  private lastFreshStart = -Infinity;
  /** The turn of the last request waiting to start on a fresh connection. */
  private freshTurns: Promise<void> = Promise.resolve();

  constructor(baseUrl: string, options: RestOptions = {}) {
    this.base = baseUrl.replace(/\/+$/, '');
    if (options.token !== undefined && options.token !== '') this.headers['authorization'] = `Bearer ${options.token}`;
    else if (options.username !== undefined && options.username !== '') {
      this.headers['authorization'] = `Basic ${Buffer.from(`${options.username}:${options.password ?? ''}`).toString('base64')}`;
    }
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.attempts = Math.max(1, options.attempts ?? 5);
    this.backoffMs = options.backoffMs ?? 500;
    const maxInFlight = Math.max(1, options.maxInFlight ?? 4);
    this.gate = new Gate(maxInFlight);
    const secure = /^https:/i.test(this.base);
    this.transport = secure ? https : http;
    const ca = secure ? extraCertificateAuthorities() : undefined;
    this.agent = secure
      ? new https.Agent({ keepAlive: true, maxSockets: maxInFlight, rejectUnauthorized: !options.insecureTls, ...(ca ? { ca } : {}) })
      : new http.Agent({ keepAlive: true, maxSockets: maxInFlight });
    this.freshAgent = secure
      ? new https.Agent({ keepAlive: false, maxSockets: maxInFlight, rejectUnauthorized: !options.insecureTls, ...(ca ? { ca } : {}) })
      : new http.Agent({ keepAlive: false, maxSockets: maxInFlight });
  }

  /**
   * GET (query) or POST (JSON body) an /api/2.0/mlflow/… style path; returns parsed JSON.
   * `freshConnection`: send it on a connection of its own instead of a kept-alive one. A server with
   * several worker processes (mlflow server --workers N) serves a kept-alive connection with the worker
   * that accepted it, so expensive requests sent at once (listing pages) could all queue on one worker
   * while the others idle; each on a new connection, they spread over the workers that are free.
   */
  async json(method: 'GET' | 'POST', path: string, payload?: Record<string, unknown>, options: { freshConnection?: boolean } = {}): Promise<Record<string, unknown>> {
    const { url, body } = this.prepare(method, path, payload);
    const agent = options.freshConnection === true ? this.freshAgent : this.agent;
    if (agent === this.freshAgent) await this.spaceFreshStart();
    const { status, text } = await this.withRetries(method, url, body, agent, async (answer, deadline) => ({ status: answer.status, text: await readText(answer.response, deadline) }));
    try {
      const parsed: unknown = text.trim() === '' ? {} : parseLenientJson(text);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
      return parsed as Record<string, unknown>;
    } catch (error) {
      throw new RestError(`${method} ${this.base}${path}: the server answered with invalid JSON (${(error as Error).message}): ${JSON.stringify(truncate(text, 200))}`, status, path);
    }
  }

  /**
   * Waits until this request may start on a fresh connection: FRESH_CONNECTION_SPACING_MS after the one
   * before actually started. Measured when each turn comes, not planned ahead: timers that fire late
   * (the main thread was busy, e.g. loading modules) would otherwise start their requests together.
   */
  private spaceFreshStart(): Promise<void> {
    const turn = this.freshTurns.then(async () => {
      const wait = this.lastFreshStart + FRESH_CONNECTION_SPACING_MS - performance.now();
      if (wait > 0) await sleep(wait);
      this.lastFreshStart = performance.now();
    });
    this.freshTurns = turn;
    return turn;
  }

  /** A streaming response body (artifact downloads); the timeout covers the wait for the headers and any stall of the body. */
  async stream(path: string): Promise<Readable> {
    const { url } = this.prepare('GET', path, undefined);
    return this.withRetries('GET', url, undefined, this.agent, async (answer) => {
      const response = answer.response;
      response.socket?.setTimeout(this.timeoutMs, () => response.destroy(new RestError(`GET ${url}: the download stalled for ${this.timeoutMs} ms`, undefined, url)));
      response.once('end', () => response.socket?.setTimeout(0));
      return response;
    });
  }

  /** Closes the kept-alive connections; requests not yet sent fail. */
  close(): void {
    this.closed = true;
    this.agent.destroy();
    this.freshAgent.destroy();
  }

  private prepare(method: 'GET' | 'POST', path: string, payload: Record<string, unknown> | undefined): { url: string; body: Buffer | undefined } {
    let url = `${this.base}${path}`;
    if (method === 'GET' && payload !== undefined) {
      const query = new URLSearchParams();
      for (const [key, value] of Object.entries(payload)) {
        if (value === undefined) continue;
        for (const item of Array.isArray(value) ? value : [value]) query.append(key, String(item));
      }
      url += `${url.includes('?') ? '&' : '?'}${query.toString()}`;
    }
    return { url, body: method === 'POST' ? Buffer.from(JSON.stringify(payload ?? {})) : undefined };
  }

  /**
   * Sends the request until `take` gets an OK answer (within the request's deadline) or the attempts
   * run out. Each attempt holds one place of the in-flight limit, not the backoff between attempts.
   */
  private async withRetries<T>(method: 'GET' | 'POST', url: string, body: Buffer | undefined, agent: http.Agent, take: (answer: Answer, deadline: number) => Promise<T>): Promise<T> {
    let lastProblem = '';
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      const outcome = await this.gate.run(async (): Promise<{ ok: T } | { retryAfterMs?: number }> => {
        if (this.closed) throw new RestError(`${method} ${url}: the reader was closed`, undefined, url);
        const deadline = Date.now() + this.timeoutMs;
        let answer: Answer;
        try {
          answer = await this.send(method, url, body, agent, deadline).catch((error: unknown) => {
            // A kept-alive connection the server closed while idle: send again at once on a new one.
            if ((error as { reusedSocket?: boolean }).reusedSocket === true && (error as { code?: string }).code === 'ECONNRESET') return this.send(method, url, body, agent, deadline);
            throw error;
          });
        } catch (error) {
          lastProblem = describe(error, this.timeoutMs);
          return {};
        }
        if (answer.status >= 200 && answer.status < 300) {
          try {
            return { ok: await take(answer, deadline) };
          } catch (error) {
            if (error instanceof RestError) throw error;
            lastProblem = describe(error, this.timeoutMs);
            return {};
          }
        }
        const text = await readText(answer.response, deadline).catch(() => '');
        lastProblem = `HTTP ${answer.status}: ${truncate(text, 300)}`;
        if (!RETRYABLE.has(answer.status)) throw new RestError(`${method} ${url} failed with ${lastProblem}`, answer.status, url);
        const retryAfter = Number(answer.retryAfter);
        return Number.isFinite(retryAfter) && retryAfter > 0 ? { retryAfterMs: Math.min(retryAfter * 1000, 30_000) } : {};
      });
      if ('ok' in outcome) return outcome.ok;
      if (attempt < this.attempts) {
        const delay = outcome.retryAfterMs ?? Math.min(this.backoffMs * 2 ** (attempt - 1), 10_000) * (0.8 + Math.random() * 0.4);
        await sleep(delay);
      }
    }
    throw new RestError(`${method} ${url} failed after ${this.attempts} attempts; last: ${lastProblem}`, undefined, url);
  }

  private send(method: 'GET' | 'POST', url: string, body: Buffer | undefined, agent: http.Agent, deadline: number): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...this.headers };
      if (body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = body.length;
      }
      const request = this.transport.request(url, { method, headers, agent }, (response) => {
        clearTimeout(timer);
        const retryAfter = response.headers['retry-after'];
        resolve({ status: response.statusCode ?? 0, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, response });
      });
      const timer = setTimeout(() => request.destroy(new TimeoutError()), Math.max(0, deadline - Date.now()));
      request.once('error', (error) => {
        clearTimeout(timer);
        reject(Object.assign(error, { reusedSocket: request.reusedSocket }));
      });
      request.end(body);
    });
  }
}

class TimeoutError extends Error {
  override name = 'TimeoutError';
}

function describe(error: unknown, timeoutMs: number): string {
  if (error instanceof TimeoutError) return `no answer within ${timeoutMs} ms`;
  const code = (error as { code?: string }).code;
  return `${(error as Error).message}${code !== undefined && !(error as Error).message.includes(code) ? ` (${code})` : ''}`;
}

/** The whole body as text, or a TimeoutError when it has not arrived by `deadline`. */
function readText(response: http.IncomingMessage, deadline: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => response.destroy(new TimeoutError()), Math.max(0, deadline - Date.now()));
    response.on('data', (chunk: Buffer) => chunks.push(chunk));
    response.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    response.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    response.once('close', () => {
      clearTimeout(timer);
      // After 'end' this is a no-op; before it, the connection went away mid-answer.
      reject(new Error('the connection closed before the whole answer arrived'));
    });
  });
}
