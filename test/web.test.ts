// The web page in a real headless Chromium against a real duckvisord: the Now view updates live,
// a memory-killed run shows its limit line and kill marker, History filters and links, the Stop button
// stops a job; plus the listener rules (loopback only by default, 401 without the token).
import test from 'ava';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { StatusView } from '../supervisor/control.js';
import type { RunView } from '../supervisor/history.js';
import { startHttpServer } from '../supervisor/http.js';
import { projectRoot } from '../supervisor/paths.js';
import { createWebHandler, resolveStaticFile } from '../supervisor/web.js';
import { fixture, killQuietly, startDaemon, waitFor, writeConfig, type DaemonProcess } from './helpers/duckvisord.js';
import { freePort, httpRequest, socketStatus, startPageServer, type PageServer } from './helpers/web-server.js';

const chromiumPath = '/usr/bin/chromium';
const artifacts = path.join(projectRoot, 'test', 'artifacts');
const webRoot = path.join(projectRoot, 'dist', 'web');

interface Env {
  daemon: DaemonProcess;
  socket: string;
  base: string;
  /** The port serving the page (the daemon's control.http, or the in-process fallback). */
  port: number;
  server: PageServer | null;
  context: BrowserContext;
  profile: string;
}

let env: Env | undefined;

// Functions passed to page.evaluate/waitForFunction run in the browser; this file compiles without the DOM library.
interface BrowserElement {
  textContent: string | null;
  disabled?: boolean;
  getAttribute(name: string): string | null;
}
declare const document: { querySelector(selector: string): BrowserElement | null; querySelectorAll(selector: string): { length: number } };
declare const location: { hash: string };

function jobs(): string {
  return `  walker:
    command: [python3, ${JSON.stringify(fixture('progress.py'))}, "3000"]
    heartbeat: stdout
    autostart: true
    limits: { rss: 256MiB, swap: 64MiB }
  leaker:
    command: [node, ${JSON.stringify(fixture('leaker.mjs'))}, "80"]
    heartbeat: none
    autostart: false
    sample_interval: 100ms
    limits: { rss: 160MiB }
    retries: { max: 0 }
`;
}

async function api<T>(method: string, urlPath: string): Promise<T> {
  const answer = await httpRequest({ socketPath: env!.socket }, method, urlPath);
  if (answer.status >= 400) throw new Error(`${method} ${urlPath}: HTTP ${answer.status}: ${answer.body}`);
  return JSON.parse(answer.body) as T;
}

/** A fresh tab that records console errors and page errors. */
async function openPage(hash: string): Promise<{ page: Page; errors: string[] }> {
  const page = await env!.context.newPage();
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('requestfailed', (request) => {
    // EventSource requests are aborted when the tab closes; anything else failing is a defect.
    if (!request.url().includes('/v1/stream')) errors.push(`requestfailed: ${request.url()} ${request.failure()?.errorText}`);
  });
  await page.goto(`${env!.base}/${hash}`);
  return { page, errors };
}

test.before(async () => {
  const port = await freePort();
  const { config, socket, dir } = writeConfig(jobs(), `  http: 127.0.0.1:${port}`);
  const daemon = await startDaemon(config);
  // duckvisord serves the page on control.http itself; a daemon built without that wiring gets the same
  // handler served from this process through supervisor/http.ts, with the API forwarded to its socket.
  const own = await httpRequest({ port }, 'GET', '/').catch(() => null);
  const server = own?.status === 200 && own.body.includes('<title>duckvisor</title>') ? null : await startPageServer(socket);
  const base = server?.url ?? `http://127.0.0.1:${port}`;
  const profile = mkdtempSync(path.join(os.tmpdir(), 'dv-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1360, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  env = { daemon, socket, base, port: server?.port ?? port, server, context, profile };
  mkdirSync(artifacts, { recursive: true });
  void dir;
});

test.after.always(async () => {
  if (!env) return;
  await env.context.close().catch(() => {});
  await env.server?.close();
  killQuietly(env.daemon.child.pid, 'SIGTERM');
  await Promise.race([env.daemon.exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
  killQuietly(env.daemon.child.pid);
  rmSync(env.profile, { recursive: true, force: true });
});

test.serial('the Now view loads without console errors and a running job\'s progress advances live', async (t) => {
  const { page, errors } = await openPage('#/now');
  t.teardown(() => page.close());
  const progress = page.locator('[data-job="walker"] [data-field="progress"]');
  await waitFor(async () => /^\d[\d,]* \/ 3,000/.test((await progress.textContent()) ?? ''), 30_000, 'walker progress on the page');
  const first = Number(((await progress.textContent()) ?? '').split(' ')[0]!.replace(/,/g, ''));
  // The page must change by itself (SSE), without a reload.
  await page.waitForFunction(
    ({ before }) => Number((document.querySelector('[data-job="walker"] [data-field="progress"]')?.textContent ?? '').split(' ')[0]!.replace(/,/g, '')) > before,
    { before: first },
    { timeout: 30_000 },
  );
  const second = Number(((await progress.textContent()) ?? '').split(' ')[0]!.replace(/,/g, ''));
  t.true(second > first, `progress advanced from ${first} to ${second}`);
  t.regex((await page.locator('[data-job="walker"] [data-field="state"]').textContent()) ?? '', /running/);
  t.regex((await page.locator('[data-job="walker"] [data-field="rss"]').textContent()) ?? '', /RSS .+ \/ 256\.0 MiB/);
  t.regex((await page.locator('[data-job="walker"] [data-field="swap"]').textContent()) ?? '', /swap .+ \/ 64\.0 MiB/, 'the swap gauge reads the job\'s swap limit');
  t.regex((await page.locator('[data-job="walker"] [data-field="rate"]').textContent()) ?? '', /\/s$/);
  t.regex((await page.locator('#daemon-line').textContent()) ?? '', /duckvisord pid \d+/);
  t.true(await page.locator('#live-dot.on').isVisible(), 'live indicator on');
  await page.screenshot({ path: path.join(artifacts, 'web-now.png'), fullPage: true });
  t.deepEqual(errors, []);
});

test.serial('a memory-killed run shows its chart with the RSS limit line and the kill marker with its reason', async (t) => {
  const { run } = await api<{ run: RunView }>('POST', '/v1/jobs/leaker/start');
  const ended = await waitFor(async () => {
    const detail = await api<{ run: RunView }>('GET', `/v1/runs/${run.id}`);
    return ['killed', 'failed', 'succeeded'].includes(detail.run.state) ? detail.run : null;
  }, 60_000, 'the leaker to be killed');
  t.is(ended.state, 'killed');
  t.is(ended.reason, 'memory');
  const { page, errors } = await openPage(`#/run/${encodeURIComponent(run.id)}`);
  t.teardown(() => page.close());
  const limit = page.locator('svg.chart g.limit[data-limit^="RSS limit"]');
  await limit.waitFor({ timeout: 15_000 });
  t.regex((await limit.textContent()) ?? '', /RSS limit 160\.0 MiB/);
  const marker = page.locator('svg.chart g.marker-kill');
  t.is(await marker.count(), 1);
  t.regex((await marker.textContent()) ?? '', /killed \(memory\): .+ MiB against a limit of 160\.0 MiB/);
  t.regex((await page.locator('[data-field="kill"]').textContent()) ?? '', /killed \(memory\)/);
  t.true((await page.locator('svg.chart path[data-series="RSS"]').getAttribute('d'))!.split('L').length > 3, 'the RSS series has points');
  // The limit line lies above the start of the RSS curve, and the marker sits inside the plot.
  const boxes = await page.evaluate(() => {
    const line = document.querySelector('svg.chart g.limit line')!;
    const marker = document.querySelector('svg.chart g.marker-kill line')!;
    return { limitY: Number(line.getAttribute('y1')), markerX: Number(marker.getAttribute('x1')), width: Number(document.querySelector('svg.chart')!.getAttribute('width')) };
  });
  t.true(boxes.markerX > 0 && boxes.markerX < boxes.width);
  t.regex((await page.locator('[data-field="log"]').textContent()) ?? '', /"rss":\d+/, 'last log lines of the leaker are shown');
  t.true((await page.locator('table.events tr.event-kill').count()) >= 1, 'the kill event is listed');
  await page.screenshot({ path: path.join(artifacts, 'web-run-killed.png'), fullPage: true });
  t.deepEqual(errors, []);
});

test.serial('History lists runs, filters by state and links through to a run', async (t) => {
  const { page, errors } = await openPage('#/history');
  t.teardown(() => page.close());
  await page.locator('table.runs tbody tr').first().waitFor({ timeout: 15_000 });
  t.true((await page.locator('.job-chart[data-job="leaker"] svg circle').count()) >= 1, 'the leaker has a dot in its outcome chart');
  t.true((await page.locator('.job-chart[data-job="walker"]').count()) === 1);
  await page.screenshot({ path: path.join(artifacts, 'web-history.png'), fullPage: true });
  await page.selectOption('select[data-filter="state"]', 'killed');
  await page.waitForFunction(() => location.hash.includes('state=killed') && document.querySelectorAll('table.runs tbody tr').length > 0);
  const states = await page.locator('table.runs tbody tr td:nth-child(4)').allTextContents();
  t.true(states.length >= 1);
  t.true(states.every((state) => state.startsWith('killed')), states.join(', '));
  await page.locator('table.runs tbody tr a').first().click();
  await page.locator('.run-head h1').waitFor();
  t.regex((await page.locator('.run-head h1').textContent()) ?? '', /^Run /);
  t.deepEqual(errors, []);
});

test.serial('the Stop button stops a running job: the run ends killed by the operator', async (t) => {
  const before = await socketStatus(env!.socket);
  const walker = before.jobs.find((job) => job.job === 'walker')!;
  t.is(walker.run?.state, 'running');
  const runId = walker.run!.id;
  const { page, errors } = await openPage('#/now');
  t.teardown(() => page.close());
  const stop = page.locator('[data-job="walker"] button[data-action="stop"]');
  await page.waitForFunction(() => !document.querySelector('[data-job="walker"] button[data-action="stop"]')?.disabled);
  await stop.click();
  const run = await waitFor(async () => {
    const detail = await api<{ run: RunView }>('GET', `/v1/runs/${runId}`);
    return detail.run.ended_at ? detail.run : null;
  }, 30_000, 'the walker run to end');
  t.is(run.state, 'killed');
  t.is(run.reason, 'operator');
  // The page shows it too, live.
  await page.waitForFunction(() => /killed \(operator\)/.test(document.querySelector('[data-job="walker"] [data-field="state"]')?.textContent ?? ''), undefined, { timeout: 15_000 });
  t.regex((await page.locator('.notice').textContent()) ?? '', /walker: stop requested/);
  await page.screenshot({ path: path.join(artifacts, 'web-now-stopped.png'), fullPage: true });
  t.deepEqual(errors, []);
});

test.serial('a run with progress draws its progress curve from the samples, on its own axis from 0 to the total', async (t) => {
  const { runs } = await api<{ runs: RunView[] }>('GET', '/v1/history?job=walker&limit=1');
  const run = runs[0]!;
  t.true(run.progress_done !== null && run.progress_done > 0, 'the walker made progress');
  const detail = await api<{ samples: Array<{ progress_done: number | null }> }>('GET', `/v1/runs/${run.id}`);
  const carried = detail.samples.filter((sample) => sample.progress_done !== null).map((sample) => sample.progress_done!);
  t.true(carried.length > 3, 'samples carry the progress of their moment');
  t.deepEqual(carried, [...carried].sort((a, b) => a - b), 'and it never goes back');
  t.true(carried.at(-1)! <= 3000);
  const { page, errors } = await openPage(`#/run/${encodeURIComponent(run.id)}`);
  t.teardown(() => page.close());
  const curve = page.locator('svg.chart path[data-series="progress"]');
  await curve.waitFor({ timeout: 15_000 });
  t.true((await curve.getAttribute('d'))!.split('L').length > 3, 'the progress series has points');
  const axis = await page.locator('svg.chart .axis-label.right2').allTextContents();
  t.deepEqual([...axis].sort(), ['0', '750', '1,500', '2,250', '3,000', 'items'].sort(), 'labels 0..total and the unit');
  t.regex((await page.locator('.legend').textContent()) ?? '', /progress in items/);
  await page.screenshot({ path: path.join(artifacts, 'web-run-progress.png'), fullPage: true });
  t.deepEqual(errors, []);
});

test.serial('the event stream sends the status at once, then every interval, and forgets a closed client', async (t) => {
  const status = await new Promise<StatusView>((resolve, reject) => {
    const started = httpRequestStream(env!.port, (frame) => {
      if (frame.event === 'status') {
        started.close();
        resolve(JSON.parse(frame.data) as StatusView);
      }
    }, reject);
  });
  t.deepEqual(status.jobs.map((job) => job.job), ['leaker', 'walker']);
  if (env!.server) await waitFor(() => env!.server!.web.streamClients() === 0, 5000, 'the closed stream to be dropped');
  t.pass();
});

/** Opens /v1/stream over TCP and calls `onFrame` for each SSE frame. */
function httpRequestStream(port: number, onFrame: (frame: { event: string; data: string }) => void, onError: (error: Error) => void): { close(): void } {
  let buffer = '';
  const request = (async () => {
    const { request: httpRequestRaw } = await import('node:http');
    const req = httpRequestRaw({ host: '127.0.0.1', port, path: '/v1/stream', headers: { accept: 'text/event-stream' } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data !== undefined) onFrame({ event, data });
        }
      });
    });
    req.on('error', (error) => {
      if ((error as NodeJS.ErrnoException).code !== 'ECONNRESET') onError(error);
    });
    req.end();
    return req;
  })();
  return { close: () => void request.then((req) => req.destroy()) };
}

test('static files: right content types, revalidation with ETag, no way out of dist/web', async (t) => {
  const handler = createWebHandler((_req, res) => res.writeHead(418).end(), () => ({ daemon: {} as StatusView['daemon'], jobs: [] }));
  const server = await startHttpServer({ listen: '127.0.0.1:0', handler });
  t.teardown(() => server.close());
  const port = server.address.port;
  const index = await httpRequest({ port }, 'GET', '/');
  t.is(index.status, 200);
  t.is(index.headers['content-type'], 'text/html; charset=utf-8');
  t.regex(index.body, /<script type="module" src="app.js">/);
  t.regex(String(index.headers['content-security-policy']), /default-src 'self'/);
  const script = await httpRequest({ port }, 'GET', '/app.js');
  t.is(script.headers['content-type'], 'text/javascript; charset=utf-8');
  t.is(script.headers['cache-control'], 'no-cache');
  const again = await httpRequest({ port }, 'GET', '/app.js', { 'if-none-match': String(script.headers.etag) });
  t.is(again.status, 304);
  t.is((await httpRequest({ port }, 'GET', '/style.css')).headers['content-type'], 'text/css; charset=utf-8');
  for (const evil of ['/../package.json', '/%2e%2e/package.json', '/..%2fpackage.json', '/%2e%2e%2f%2e%2e%2fpackage.json', '/.tsbuildinfo', '/..\\package.json', '/%00index.html']) {
    t.is((await httpRequest({ port }, 'GET', evil)).status, 404, evil);
  }
  t.is(resolveStaticFile(webRoot, '/../../package.json'), null);
  t.is(resolveStaticFile(webRoot, '/')?.file, path.join(webRoot, 'index.html'));
  t.is((await httpRequest({ port }, 'POST', '/index.html')).status, 405);
  t.is((await httpRequest({ port }, 'GET', '/v1/status')).status, 418, '/v1 goes to the API handler');
  t.is((await httpRequest({ port }, 'POST', '/v1/stream')).status, 405);
});

test('the event stream refuses clients beyond its bound', async (t) => {
  const handler = createWebHandler((_req, res) => res.end(), () => ({ daemon: {} as StatusView['daemon'], jobs: [] }), { maxStreamClients: 1 });
  const server = await startHttpServer({ listen: '127.0.0.1:0', handler });
  t.teardown(async () => {
    handler.close();
    await server.close();
  });
  const first = await new Promise<{ close(): void }>((resolve, reject) => {
    const stream = httpRequestStream(server.address.port, () => resolve(stream), reject);
  });
  t.is(handler.streamClients(), 1);
  const refused = await httpRequest({ port: server.address.port }, 'GET', '/v1/stream');
  t.is(refused.status, 503);
  t.regex(refused.body, /too many open status streams/);
  first.close();
  await waitFor(() => handler.streamClients() === 0, 5000, 'the stream to close');
  t.pass();
});

test('by default the page listens on loopback only; a non-loopback address without a token is refused', async (t) => {
  const handler = createWebHandler((_req, res) => res.end(), () => ({ daemon: {} as StatusView['daemon'], jobs: [] }));
  const server = await startHttpServer({ listen: `127.0.0.1:${await freePort()}`, handler });
  t.teardown(() => server.close());
  t.is(server.address.host, '127.0.0.1');
  // The kernel's own table: the listening socket is bound to 127.0.0.1, so no other interface reaches it.
  const portHex = server.address.port.toString(16).toUpperCase().padStart(4, '0');
  const listening = readFileSync('/proc/net/tcp', 'utf8').split('\n').filter((line) => line.includes(`:${portHex} `) && / 0A /.test(line));
  t.is(listening.length, 1);
  t.regex(listening[0]!, new RegExp(`0100007F:${portHex}`));
  await t.throwsAsync(startHttpServer({ listen: '0.0.0.0:0', handler }), { message: /not a loopback address.*without control\.http_token/ });
});

test('with a token, the page, its assets, the API and the stream all answer 401 without it', async (t) => {
  const token = 'web-test-secret';
  const { config, socket } = writeConfig(`  idle:\n    command: [node, ${JSON.stringify(fixture('sleeper.mjs'))}, forever]\n    heartbeat: none\n`);
  const daemon = await startDaemon(config);
  t.teardown(() => killQuietly(daemon.child.pid));
  const server = await startPageServer(socket, { token });
  t.teardown(() => server.close());
  for (const urlPath of ['/', '/index.html', '/app.js', '/style.css', '/v1/status', '/v1/stream', '/v1/history']) {
    const answer = await httpRequest({ port: server.port }, 'GET', urlPath);
    t.is(answer.status, 401, urlPath);
    t.false(answer.body.includes('duckvisor</title>'), urlPath);
  }
  t.is((await httpRequest({ port: server.port }, 'POST', '/v1/jobs/idle/start')).status, 401);
  t.is((await httpRequest({ port: server.port }, 'GET', '/v1/status', { authorization: 'Bearer wrong' })).status, 401);
  const page = await httpRequest({ port: server.port }, 'GET', '/', { authorization: `Bearer ${token}` });
  t.is(page.status, 200);
  const status = await httpRequest({ port: server.port }, 'GET', '/v1/status', { authorization: `Bearer ${token}` });
  t.is(status.status, 200);
  t.deepEqual((JSON.parse(status.body) as StatusView).jobs.map((job) => job.job), ['idle']);
});
