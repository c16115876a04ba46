// The optional TCP listener (`control.http`): Prometheus /metrics, and everything else delegated to the
// daemon's handler (its JSON control API, later the web page). Loopback by default; a non-loopback
// address is refused unless a token is configured, and with a token every request must carry
// `Authorization: Bearer <token>` (compared in constant time).
//
// How the daemon uses it (call sites):
//   if (config.control.http) {
//     http = await startHttpServer({ listen: config.control.http, token: config.control.http_token, handler: controlHandler }, metrics);
//     log.info('http listening', { address: `${http.address.host}:${http.address.port}` });
//   }
//   ...on shutdown: await http?.close();
// startHttpServer rejects with an Error naming `control.http` (bad address, refused bind, port in use):
// report it like a config error.
import { createHash, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface HttpServerOptions {
  /** "host:port" ("127.0.0.1:9477", "[::1]:9477", "localhost:0"). */
  listen: string;
  /** When set, required as a bearer token on every request (and it allows a non-loopback bind). */
  token?: string;
  /** Everything but /metrics goes here. */
  handler: RequestHandler;
}

/** Anything that can render the Prometheus text (DaemonMetrics). */
export interface MetricsSource {
  metricsText(): Promise<string>;
  readonly contentType?: string;
}

export interface HttpServerHandle {
  /** The bound address (the real port when listen asked for port 0). */
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

/** Splits "host:port" (IPv6 in brackets); throws an error naming control.http on anything else. */
export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s\[\]]+)):(\d{1,5})$/.exec(listen.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new Error(`control.http: "${listen}" is not host:port (for example 127.0.0.1:9477 or [::1]:9477)`);
  }
  return { host: (match[1] ?? match[2])!, port };
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopbackAddress(address: string): boolean {
  if (net.isIPv4(address)) return address.startsWith('127.');
  if (net.isIPv6(address)) {
    const lower = address.toLowerCase();
    return lower === '::1' || lower === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(lower);
  }
  return false;
}

/** Constant-time check of an Authorization header against the token (hashing first equalises lengths). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  const digest = (text: string) => createHash('sha256').update(text).digest();
  const ok = timingSafeEqual(digest(match?.[1] ?? ''), digest(token));
  return ok && match !== null;
}

/**
 * Why: a browser cannot add an Authorization header to a page load, an asset or an EventSource, so
 * the token is also accepted once as `?token=` (the web handler then sets it as an HttpOnly,
 * SameSite=Strict cookie `duckvisor_token`) and from that cookie afterwards.
 */
export function requestCarriesToken(req: IncomingMessage, token: string): boolean {
  if (bearerMatches(req.headers.authorization, token)) return true;
  const queryToken = new URL(req.url ?? '/', 'http://localhost').searchParams.get('token');
  if (queryToken !== null && bearerMatches(`Bearer ${queryToken}`, token)) return true;
  const cookie = /(?:^|;\s*)duckvisor_token=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
  if (cookie === undefined) return false;
  let decoded: string;
  try {
    decoded = decodeURIComponent(cookie);
  } catch {
    return false;
  }
  return bearerMatches(`Bearer ${decoded}`, token);
}

/** Why: one place that decides who may reach /metrics and the control API over TCP. */
export async function startHttpServer(options: HttpServerOptions, metrics?: MetricsSource | null): Promise<HttpServerHandle> {
  const { host, port } = parseListen(options.listen);
  if (options.token !== undefined && options.token.trim() === '') {
    throw new Error('control.http_token: must not be empty (remove it to serve loopback without a token)');
  }
  const addresses = net.isIP(host) ? [host] : (await lookup(host, { all: true }).catch(() => [])).map((entry) => entry.address);
  if (addresses.length === 0) throw new Error(`control.http: cannot resolve host "${host}" in "${options.listen}"`);
  const nonLoopback = addresses.filter((address) => !isLoopbackAddress(address));
  if (nonLoopback.length > 0 && options.token === undefined) {
    throw new Error(
      `control.http: refusing to listen on ${options.listen} (${nonLoopback.join(', ')} is not a loopback address) without control.http_token; ` +
        'set control.http_token, or listen on 127.0.0.1',
    );
  }

  const server = http.createServer((req, res) => {
    void serve(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`internal error: ${error instanceof Error ? error.message : String(error)}\n`);
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (options.token !== undefined && !requestCarriesToken(req, options.token)) {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="duckvisor"', 'content-type': 'text/plain; charset=utf-8' });
      res.end('401 unauthorized: send Authorization: Bearer <control.http_token>\n');
      return;
    }
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (pathname === '/metrics' && metrics) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const text = await metrics.metricsText();
      res.writeHead(200, { 'content-type': metrics.contentType ?? 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(req.method === 'HEAD' ? undefined : text);
      return;
    }
    await options.handler(req, res);
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(new Error(`control.http: cannot listen on ${options.listen}: ${error.code === 'EADDRINUSE' ? 'address already in use' : error.message}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  return {
    address: { host: bound.address, port: bound.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
