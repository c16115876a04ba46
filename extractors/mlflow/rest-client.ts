// HTTP for the tracking-server reader: MLflow's auth conventions (MLFLOW_TRACKING_TOKEN → Bearer,
// MLFLOW_TRACKING_USERNAME/PASSWORD → Basic), a timeout on every request (AbortSignal.timeout),
// retries with exponential backoff and jitter on 429/5xx and network errors (Retry-After honoured),
// and JSON errors that quote what the server actually sent.
import { setTimeout as sleep } from 'node:timers/promises';

export interface RestOptions {
  token?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  /** MLFLOW_TRACKING_INSECURE_TLS: skip certificate checks (see restOptionsFromEnv for how). */
  insecureTls?: boolean;
  /** Per-request timeout. Default 60 s (MLFLOW_HTTP_REQUEST_TIMEOUT seconds when set). */
  timeoutMs?: number;
  /** Attempts per request, including the first. Default 5 (MLFLOW_HTTP_REQUEST_MAX_RETRIES + 1). */
  attempts?: number;
  /** First backoff; doubled per retry, capped at 10 s. Default 500 ms. */
  backoffMs?: number;
}

const RETRYABLE = new Set([429, 500, 502, 503, 504]);

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

// Why: every call of the REST reader goes through one client that owns auth, timeouts and retries.
export class RestClient {
  readonly base: string;
  private readonly headers: Record<string, string> = { accept: 'application/json' };
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly backoffMs: number;

  constructor(baseUrl: string, options: RestOptions = {}) {
    this.base = baseUrl.replace(/\/+$/, '');
    if (options.token !== undefined && options.token !== '') this.headers['authorization'] = `Bearer ${options.token}`;
    else if (options.username !== undefined && options.username !== '') {
      this.headers['authorization'] = `Basic ${Buffer.from(`${options.username}:${options.password ?? ''}`).toString('base64')}`;
    }
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.attempts = Math.max(1, options.attempts ?? 5);
    this.backoffMs = options.backoffMs ?? 500;
  }

  /** GET (query) or POST (JSON body) an /api/2.0/mlflow/… style path; returns parsed JSON. */
  async json(method: 'GET' | 'POST', path: string, payload?: Record<string, unknown>): Promise<Record<string, unknown>> {
    const response = await this.request(method, path, payload);
    const text = await response.text();
    try {
      const parsed: unknown = text.trim() === '' ? {} : JSON.parse(text);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
      return parsed as Record<string, unknown>;
    } catch (error) {
      throw new RestError(`${method} ${this.base}${path}: the server answered with invalid JSON (${(error as Error).message}): ${JSON.stringify(truncate(text, 200))}`, response.status, path);
    }
  }

  /** A streaming response body (artifact downloads). */
  async stream(path: string): Promise<Response> {
    return this.request('GET', path);
  }

  private async request(method: 'GET' | 'POST', path: string, payload?: Record<string, unknown>): Promise<Response> {
    let url = `${this.base}${path}`;
    if (method === 'GET' && payload !== undefined) {
      const query = new URLSearchParams();
      for (const [key, value] of Object.entries(payload)) {
        if (value === undefined) continue;
        for (const item of Array.isArray(value) ? value : [value]) query.append(key, String(item));
      }
      url += `${url.includes('?') ? '&' : '?'}${query.toString()}`;
    }
    let lastProblem = '';
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      let response: Response | undefined;
      try {
        response = await fetch(url, {
          method,
          headers: method === 'POST' ? { ...this.headers, 'content-type': 'application/json' } : this.headers,
          body: method === 'POST' ? JSON.stringify(payload ?? {}) : undefined,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (error) {
        const cause = (error as { cause?: { code?: string; message?: string } }).cause;
        const name = (error as Error).name;
        lastProblem = name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : `${(error as Error).message}${cause?.code ? ` (${cause.code})` : cause?.message ? ` (${cause.message})` : ''}`;
      }
      if (response !== undefined) {
        if (response.ok) return response;
        const body = await response.text().catch(() => '');
        lastProblem = `HTTP ${response.status}: ${truncate(body, 300)}`;
        if (!RETRYABLE.has(response.status)) {
          throw new RestError(`${method} ${url} failed with ${lastProblem}`, response.status, url);
        }
        const retryAfter = Number(response.headers.get('retry-after'));
        if (attempt < this.attempts && Number.isFinite(retryAfter) && retryAfter > 0) {
          await sleep(Math.min(retryAfter * 1000, 30_000));
          continue;
        }
      }
      if (attempt < this.attempts) {
        const delay = Math.min(this.backoffMs * 2 ** (attempt - 1), 10_000);
        await sleep(delay * (0.8 + Math.random() * 0.4));
      }
    }
    throw new RestError(`${method} ${url} failed after ${this.attempts} attempts; last: ${lastProblem}`, undefined, url);
  }
}
