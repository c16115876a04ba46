// Test/bench helpers for the web page: serve createWebHandler over supervisor/http.ts in this process,
// with the /v1 API and the status forwarded to a real daemon's unix socket (used when the daemon itself
// does not serve control.http yet), plus small HTTP clients for unix sockets and TCP.
import http from 'node:http';
import net from 'node:net';
import type { StatusView } from '../../supervisor/control.js';
import { startHttpServer, type HttpServerHandle } from '../../supervisor/http.js';
import { createWebHandler, type WebHandler, type WebHandlerOptions } from '../../supervisor/web.js';

/** A handler that forwards the request to the daemon's control socket and pipes the answer back. */
export function proxyToSocket(socketPath: string): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const upstream = http.request({ socketPath, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', (error) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `daemon socket: ${error.message}` }));
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  };
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request over a unix socket or TCP; resolves with status, headers and the whole body. */
export function httpRequest(target: { socketPath: string } | { port: number; host?: string }, method: string, path: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const where = 'socketPath' in target ? { socketPath: target.socketPath } : { host: target.host ?? '127.0.0.1', port: target.port };
    const req = http.request({ ...where, method, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** GET /v1/status from the daemon's socket. */
export async function socketStatus(socketPath: string): Promise<StatusView> {
  const answer = await httpRequest({ socketPath }, 'GET', '/v1/status');
  if (answer.status !== 200) throw new Error(`status: HTTP ${answer.status}: ${answer.body}`);
  return JSON.parse(answer.body) as StatusView;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export interface PageServer {
  url: string;
  port: number;
  web: WebHandler;
  close(): Promise<void>;
}

/** Serves the page + API of the daemon at `socketPath` on 127.0.0.1 (or `listen`) through supervisor/http.ts. */
export async function startPageServer(socketPath: string, options: { listen?: string; token?: string; web?: WebHandlerOptions } = {}): Promise<PageServer> {
  const web = createWebHandler(proxyToSocket(socketPath), () => socketStatus(socketPath), options.web);
  const server: HttpServerHandle = await startHttpServer({ listen: options.listen ?? '127.0.0.1:0', token: options.token, handler: web });
  return {
    url: `http://127.0.0.1:${server.address.port}`,
    port: server.address.port,
    web,
    close: async () => {
      web.close();
      await server.close();
    },
  };
}
