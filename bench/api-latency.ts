// API latency behind the web page and `top`: a real duckvisord with 20 live jobs and 500 finished runs
// in its history (each with stored samples and events). Measures GET /v1/status, /v1/history?limit=500,
// /v1/runs/:id (the largest stored run), the first /v1/stream event, and how long headless Chromium takes
// to render the Now view (20 cards) and the History view (500 rows). Writes bench/results/api-latency.{md,json}.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { History } from '../supervisor/history.js';
import { projectRoot } from '../supervisor/paths.js';
import { fixture, killQuietly, startDaemon, waitFor, writeConfig } from '../test/helpers/duckvisord.js';
import { httpRequest, socketStatus, startPageServer } from '../test/helpers/web-server.js';
import { machineLine } from './machine.js';

const COMMAND = 'npm run build && node dist/bench/api-latency.js';
const LIVE_JOBS = 20;
const HISTORY_RUNS = 500;
const SAMPLES_PER_RUN = 300;
const BIG_RUN_SAMPLES = 2000;
const REQUESTS = 100;
const STREAM_OPENS = 30;
const PAGE_LOADS = 5;

interface Stat {
  name: string;
  n: number;
  p50_ms: number;
  p95_ms: number;
  max_ms: number;
  bytes: number | null;
}

function stat(name: string, samples: number[], bytes: number | null): Stat {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const round = (v: number) => Math.round(v * 100) / 100;
  return { name, n: samples.length, p50_ms: round(at(0.5)), p95_ms: round(at(0.95)), max_ms: round(sorted.at(-1)!), bytes };
}

function runId(at: number, job: string, n: number): string {
  const d = new Date(at).toISOString().replace(/[-:T]/g, '').replace(/\..*/, '');
  return `${d.slice(0, 8)}-${d.slice(8, 14)}-${String(at % 1000).padStart(3, '0')}-${job}-${n.toString(16).padStart(4, '0')}`;
}

/** Writes HISTORY_RUNS finished runs (with samples and events) into the state dir before the daemon starts. */
function seedHistory(stateDir: string, jobs: string[]): string {
  const history = History.open(path.join(stateDir, 'history.sqlite'));
  const start = Date.now() - HISTORY_RUNS * 60_000;
  let biggest = '';
  try {
    for (let i = 0; i < HISTORY_RUNS; i += 1) {
      const job = jobs[i % jobs.length]!;
      const queuedAt = start + i * 60_000;
      const id = runId(queuedAt, job, i);
      const samples = i === HISTORY_RUNS - 1 ? BIG_RUN_SAMPLES : SAMPLES_PER_RUN;
      if (samples === BIG_RUN_SAMPLES) biggest = id;
      const outcome = i % 20 === 3 ? { state: 'killed' as const, reason: 'memory', detail: 'tree RSS 1.1 GiB exceeds the limit of 1.0 GiB (3 processes)' }
        : i % 20 === 7 ? { state: 'failed' as const, reason: 'crash', detail: 'exit code 1' }
        : i % 20 === 11 ? { state: 'interrupted' as const, reason: 'shutdown', detail: 'daemon shutdown' }
        : { state: 'succeeded' as const, reason: null, detail: null };
      history.transaction(() => {
        history.createRun({ id, job, attempt: 1, chain_id: id, state: 'running', queued_at: queuedAt, started_at: queuedAt + 100 });
        for (let s = 0; s < samples; s += 1) {
          history.addSample(id, { at: queuedAt + 100 + s * 250, rss: 50e6 + s * 1e5, swap: 0, cpu: s * 0.2, majflt_rate: 0, disk_free: 50e9, procs: 2 });
        }
        for (const message of ['queued (start requested)', 'starting attempt 1', 'running (pid 4242)']) history.addEvent({ runId: id, job, kind: 'state', message, at: queuedAt });
        if (outcome.state === 'killed') history.addEvent({ runId: id, job, kind: 'kill', message: `killing (memory): ${outcome.detail}`, measured: 1.1 * 2 ** 30, limit: 2 ** 30, data: { reason: 'memory' }, at: queuedAt + 100 + samples * 250 });
        history.updateRunWithEvent(id, { ...outcome, ended_at: queuedAt + 100 + samples * 250, progress_done: 1000, progress_total: 1000, progress_unit: 'items' },
          { runId: id, job, kind: 'state', message: outcome.state, at: queuedAt + 100 + samples * 250 });
      });
      history.releaseSamples(id);
    }
  } finally {
    history.close();
  }
  return biggest;
}

async function time(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/** Opens /v1/stream and resolves with ms until the first `status` frame. */
function firstStreamEvent(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.get({ host: '127.0.0.1', port, path: '/v1/stream' }, (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        if (/event: status\ndata: .*\n\n/.test(buffer)) {
          resolve(performance.now() - started);
          req.destroy();
        }
      });
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNRESET') reject(error);
    });
  });
}

async function main(): Promise<void> {
  const jobs = Array.from({ length: LIVE_JOBS }, (_, i) => `job-${String(i + 1).padStart(2, '0')}`);
  const yaml = jobs.map((job) => `  ${job}:\n    command: [node, ${JSON.stringify(fixture('sleeper.mjs'))}, forever, "1000"]\n    heartbeat: stdout\n    autostart: true\n`).join('');
  const { config, socket, stateDir } = writeConfig(yaml, '', mkdtempSync(path.join(os.tmpdir(), 'dv-bench-api-')));
  // writeConfig sets concurrency 3; every job must be live at once here.
  writeFileSync(config, (await import('node:fs')).readFileSync(config, 'utf8').replace('concurrency: 3', `concurrency: ${LIVE_JOBS}`));
  mkdirSync(stateDir, { recursive: true });
  const seedStarted = performance.now();
  const biggest = seedHistory(stateDir, jobs);
  const seedMs = performance.now() - seedStarted;
  const daemon = await startDaemon(config);
  const server = await startPageServer(socket);
  const results: Stat[] = [];
  try {
    await waitFor(async () => (await socketStatus(socket)).jobs.filter((job) => job.run?.state === 'running').length === LIVE_JOBS, 60_000, `${LIVE_JOBS} live jobs`);
    const target = { socketPath: socket };
    const measure = async (name: string, method: string, urlPath: string) => {
      let bytes = 0;
      for (let i = 0; i < 5; i += 1) await httpRequest(target, method, urlPath);
      const samples: number[] = [];
      for (let i = 0; i < REQUESTS; i += 1) {
        samples.push(await time(async () => {
          const answer = await httpRequest(target, method, urlPath);
          if (answer.status !== 200) throw new Error(`${urlPath}: HTTP ${answer.status}`);
          bytes = Buffer.byteLength(answer.body);
        }));
      }
      results.push(stat(name, samples, bytes));
    };
    await measure('GET /v1/status (20 live jobs)', 'GET', '/v1/status');
    await measure('GET /v1/history?limit=500', 'GET', '/v1/history?limit=500');
    await measure(`GET /v1/runs/:id (${BIG_RUN_SAMPLES} samples)`, 'GET', `/v1/runs/${biggest}`);
    const ordinary = (JSON.parse((await httpRequest(target, 'GET', '/v1/history?limit=5&state=succeeded')).body) as { runs: Array<{ id: string }> }).runs.find((run) => run.id !== biggest)!.id;
    await measure(`GET /v1/runs/:id (${SAMPLES_PER_RUN} samples)`, 'GET', `/v1/runs/${ordinary}`);
    const streamSamples: number[] = [];
    for (let i = 0; i < STREAM_OPENS; i += 1) streamSamples.push(await firstStreamEvent(server.port));
    results.push(stat('first /v1/stream status event (page server, TCP)', streamSamples, null));

    const profile = mkdtempSync(path.join(os.tmpdir(), 'dv-bench-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1360, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await context.newPage();
      const nowSamples: number[] = [];
      const historySamples: number[] = [];
      for (let i = 0; i < PAGE_LOADS; i += 1) {
        nowSamples.push(await time(async () => {
          await page.goto(`${server.url}/#/now`);
          await page.waitForFunction((n) => document.querySelectorAll('.job-card [data-field="progress"]').length === n && [...document.querySelectorAll('.job-card [data-field="progress"]')].every((e) => /\//.test(e.textContent ?? '')), LIVE_JOBS);
        }));
        historySamples.push(await time(async () => {
          await page.goto(`${server.url}/#/history`);
          await page.waitForFunction((n) => document.querySelectorAll('table.runs tbody tr').length >= n, HISTORY_RUNS);
        }));
      }
      results.push(stat(`Chromium: Now view rendered (${LIVE_JOBS} cards with progress)`, nowSamples, null));
      results.push(stat(`Chromium: History view rendered (${HISTORY_RUNS} rows + per-job charts)`, historySamples, null));
    } finally {
      await context.close();
    }
  } finally {
    await server.close();
    killQuietly(daemon.child.pid, 'SIGTERM');
    await Promise.race([daemon.exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
    killQuietly(daemon.child.pid);
  }

  const outDir = path.join(projectRoot, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const json = {
    name: 'api-latency',
    command: COMMAND,
    machine: machineLine(),
    date: new Date().toISOString(),
    setup: { live_jobs: LIVE_JOBS, history_runs: HISTORY_RUNS, samples_per_run: SAMPLES_PER_RUN, biggest_run_samples: BIG_RUN_SAMPLES, requests_per_endpoint: REQUESTS, stream_opens: STREAM_OPENS, page_loads: PAGE_LOADS, seed_ms: Math.round(seedMs) },
    results,
  };
  writeFileSync(path.join(outDir, 'api-latency.json'), JSON.stringify(json, null, 2) + '\n');
  const md = `# API latency behind the web page and \`top\`

A real duckvisord with ${LIVE_JOBS} live jobs (each printing progress) and ${HISTORY_RUNS} finished runs in its history
(${SAMPLES_PER_RUN} stored samples and a few events each; one run with ${BIG_RUN_SAMPLES} samples, the most a run keeps).
API calls go over the daemon's unix socket, sequentially, ${REQUESTS} times each after 5 warm-up calls. The event
stream is opened ${STREAM_OPENS} times through the page server (supervisor/http.ts + createWebHandler). Page
times are from navigation to the rendered view in headless Chromium (${PAGE_LOADS} loads each).

- Machine: ${json.machine}
- Command: \`${COMMAND}\`
- Date: ${json.date}

| what | n | p50 ms | p95 ms | max ms | body bytes |
| --- | ---: | ---: | ---: | ---: | ---: |
${results.map((r) => `| ${r.name} | ${r.n} | ${r.p50_ms} | ${r.p95_ms} | ${r.max_ms} | ${r.bytes ?? '-'} |`).join('\n')}

Seeding the history (${HISTORY_RUNS} runs, ${HISTORY_RUNS * SAMPLES_PER_RUN + BIG_RUN_SAMPLES - SAMPLES_PER_RUN} samples) took ${Math.round(seedMs)} ms.
`;
  writeFileSync(path.join(outDir, 'api-latency.md'), md);
  process.stdout.write(md);
}

// Functions passed to page.waitForFunction run in the browser; this file compiles without the DOM library.
declare const document: { querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }> & Iterable<{ textContent: string | null }> };

await main();
