// Talking to the daemon from the page: the same /v1 API as duckvisorctl. A token given once as
// `?token=` in the page address is kept for the tab and sent as a bearer header (and as `?token=` on
// the event stream, which cannot carry headers).
import type { RunDetail, RunView, StatusView } from './types.js';

const tokenKey = 'duckvisor.token';

function readToken(): string | null {
  const fromUrl = new URLSearchParams(location.search).get('token');
  if (fromUrl) {
    sessionStorage.setItem(tokenKey, fromUrl);
    return fromUrl;
  }
  return sessionStorage.getItem(tokenKey);
}

const token = readToken();

/** An API answer with an error status; the message is the daemon's own. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function request<T>(method: string, path: string): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, cache: 'no-store' });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    if (!res.ok) throw new ApiError(res.status, text.slice(0, 300) || `HTTP ${res.status}`);
    throw new ApiError(res.status, `the daemon answered with non-JSON: ${text.slice(0, 120)}`);
  }
  if (!res.ok) throw new ApiError(res.status, (body as { error?: string } | null)?.error ?? `HTTP ${res.status}`);
  return body as T;
}

/** GET /v1/status */
export const fetchStatus = () => request<StatusView>('GET', '/v1/status');

/** GET /v1/runs/:id */
export const fetchRun = (id: string) => request<RunDetail>('GET', `/v1/runs/${encodeURIComponent(id)}`);

/** GET /v1/history with optional filters. */
export function fetchHistory(filter: { job?: string; state?: string; reason?: string; limit?: number }): Promise<{ runs: RunView[] }> {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filter)) if (value !== undefined && value !== '') query.set(key, String(value));
  return request('GET', `/v1/history?${query}`);
}

/** The last `maxLines` lines of a run's log (reads the log once, keeps only its tail). */
export async function fetchLogTail(id: string, maxLines = 40): Promise<string[]> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`/v1/runs/${encodeURIComponent(id)}/log`, { headers, cache: 'no-store' });
  if (!res.ok) throw new ApiError(res.status, `log: HTTP ${res.status}`);
  const text = await res.text();
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.slice(-maxLines);
}

export type JobAction = 'start' | 'stop' | 'restart';

/** POST /v1/jobs/:job/{start,stop,restart} — the same rules as duckvisorctl. */
export const jobAction = (job: string, action: JobAction) => request<unknown>('POST', `/v1/jobs/${encodeURIComponent(job)}/${action}`);

/** The live status stream (SSE); the browser reconnects by itself after a drop. */
export function openStatusStream(onStatus: (status: StatusView) => void, onState: (connected: boolean, problem?: string) => void): EventSource {
  const url = token ? `/v1/stream?token=${encodeURIComponent(token)}` : '/v1/stream';
  const source = new EventSource(url);
  source.addEventListener('open', () => onState(true));
  source.addEventListener('error', () => onState(false));
  source.addEventListener('status', (event) => {
    onState(true);
    onStatus(JSON.parse((event as MessageEvent<string>).data) as StatusView);
  });
  source.addEventListener('problem', (event) => onState(false, (JSON.parse((event as MessageEvent<string>).data) as { error: string }).error));
  return source;
}
