// The web page's server side: static files of the single-page app (built into dist/web), the live
// status as Server-Sent Events on /v1/stream, and every other /v1 path handed to the control API.
// Transport-free like createControlHandler: supervisor/http.ts decides who may connect (loopback, token).
import { createReadStream, statSync, type Stats } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import type { StatusView } from './control.js';
import { distRoot } from './paths.js';

/** Where `npm run build` puts the page (web/ compiled + index.html and style.css copied). */
export const defaultWebRoot = path.join(distRoot, 'web');

/** The cookie that carries a token given once as `?token=` (the page's assets and EventSource cannot send headers). */
export const tokenCookie = 'duckvisor_token';

/** The SSE event names the page listens for. */
export const streamEvents = { status: 'status', problem: 'problem' } as const;

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** Headers on every page and asset: no sniffing, no framing, nothing loaded from anywhere else. */
const securityHeaders: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

export interface WebHandlerOptions {
  /** Folder of the built page; default dist/web. */
  webRoot?: string;
  /** How often /v1/stream pushes the status; default 1000 ms. */
  streamIntervalMs?: number;
  /** Open /v1/stream connections allowed at once; more get 503. Default 32. */
  maxStreamClients?: number;
}

type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A request handler that also reports and ends its open event streams. */
export interface WebHandler extends RequestHandler {
  /** Number of open /v1/stream connections. */
  streamClients(): number;
  /** Ends every open event stream (call before closing the listener, which would wait for them). */
  close(): void;
}

interface StreamClient {
  res: http.ServerResponse;
}

function sendText(res: http.ServerResponse, status: number, text: string, type = 'text/plain; charset=utf-8', extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), ...securityHeaders, ...extra });
  res.end(text);
}

function sendJsonError(res: http.ServerResponse, status: number, message: string, extra: Record<string, string> = {}): void {
  sendText(res, status, JSON.stringify({ error: message }) + '\n', 'application/json; charset=utf-8', extra);
}

/**
 * Maps a URL path to a file under `root`, or null when it is not a plain file inside it.
 * Decoding happens once; '..', NUL, backslashes and symlink-free prefix checks keep requests inside the root.
 */
export function resolveStaticFile(root: string, urlPath: string): { file: string; stat: Stats } | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const relative = decoded === '/' || decoded === '' ? 'index.html' : decoded.replace(/^\/+/, '');
  if (relative.split('/').some((segment) => segment === '..' || segment.startsWith('.'))) return null;
  const rootResolved = path.resolve(root);
  const file = path.resolve(rootResolved, relative);
  if (file !== rootResolved && !file.startsWith(rootResolved + path.sep)) return null;
  try {
    const stat = statSync(file);
    return stat.isFile() ? { file, stat } : null;
  } catch {
    return null;
  }
}

function serveStatic(root: string, req: http.IncomingMessage, res: http.ServerResponse, pathname: string): void {
  const method = req.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') {
    sendText(res, 405, `${method} is not allowed on ${pathname}; the page is read-only, actions go to /v1\n`, undefined, { allow: 'GET, HEAD' });
    return;
  }
  const found = resolveStaticFile(root, pathname);
  if (!found) {
    sendText(res, 404, `not found: ${pathname}\n`);
    return;
  }
  const { file, stat } = found;
  // Asset names are not content-hashed, so browsers must revalidate; the ETag makes that a cheap 304.
  const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
  const headers: Record<string, string> = {
    'content-type': contentTypes[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
    'cache-control': 'no-cache',
    etag,
    'last-modified': stat.mtime.toUTCString(),
    ...securityHeaders,
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  headers['content-length'] = String(stat.size);
  res.writeHead(200, headers);
  if (method === 'HEAD') {
    res.end();
    return;
  }
  createReadStream(file)
    .on('error', () => res.destroy())
    .pipe(res);
}

function sseFrame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * The daemon's web handler: `/v1/stream` (SSE of `getStatus()` every second and at connect), other `/v1`
 * paths to `api` (createControlHandler), everything else the built page from dist/web.
 */
export function createWebHandler(api: RequestHandler, getStatus: () => StatusView | Promise<StatusView>, options: WebHandlerOptions = {}): WebHandler {
  const root = options.webRoot ?? defaultWebRoot;
  const intervalMs = options.streamIntervalMs ?? 1000;
  const maxClients = options.maxStreamClients ?? 32;
  const clients = new Set<StreamClient>();
  let timer: NodeJS.Timeout | undefined;
  let ticking = false;

  const statusFrame = async (): Promise<string> => {
    try {
      return sseFrame(streamEvents.status, await getStatus());
    } catch (error) {
      return sseFrame(streamEvents.problem, { error: error instanceof Error ? error.message : String(error) });
    }
  };

  // One status computation per tick, shared by every client.
  const tick = async () => {
    if (ticking) return;
    ticking = true;
    try {
      const frame = await statusFrame();
      for (const client of clients) client.res.write(frame);
    } finally {
      ticking = false;
    }
  };

  const drop = (client: StreamClient) => {
    if (!clients.delete(client)) return;
    if (clients.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  const openStream = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.method !== 'GET') {
      sendJsonError(res, 405, `${req.method} is not allowed on /v1/stream; open it with GET (EventSource)`, { allow: 'GET' });
      return;
    }
    if (clients.size >= maxClients) {
      sendJsonError(res, 503, `too many open status streams (${maxClients}); close another tab or use GET /v1/status`, { 'retry-after': '5' });
      return;
    }
    req.resume();
    req.socket.setNoDelay(true);
    req.socket.setTimeout(0);
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...securityHeaders,
    });
    const client: StreamClient = { res };
    clients.add(client);
    res.on('close', () => drop(client));
    res.write('retry: 2000\n\n');
    void statusFrame().then((frame) => {
      if (clients.has(client)) res.write(frame);
    });
    timer ??= setInterval(() => void tick(), intervalMs);
  };

  const handler = ((req: http.IncomingMessage, res: http.ServerResponse) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://duckvisord');
    } catch {
      sendText(res, 400, 'bad request path\n');
      return;
    }
    const pathname = url.pathname;
    // The listener (supervisor/http.ts) has already checked any token; keep one given in the address
    // as a same-site cookie so the page's own asset, API and stream requests carry it too.
    const queryToken = url.searchParams.get('token');
    if (queryToken && /^[\x21-\x7e]+$/.test(queryToken) && !queryToken.includes(';')) {
      res.setHeader('set-cookie', `${tokenCookie}=${encodeURIComponent(queryToken)}; Path=/; HttpOnly; SameSite=Strict`);
    }
    if (pathname === '/v1/stream') return openStream(req, res);
    if (pathname === '/v1' || pathname.startsWith('/v1/')) return api(req, res);
    serveStatic(root, req, res, pathname);
  }) as WebHandler;
  handler.streamClients = () => clients.size;
  handler.close = () => {
    for (const client of [...clients]) {
      drop(client);
      client.res.end();
    }
  };
  return handler;
}
