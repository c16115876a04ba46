// Sampling cost: the supervisor's own CPU while it watches 50 idle runs at the default 250 ms interval.
// Goal: at most 1% of one core. Measured with process.cpuUsage() over a steady window, after start-up.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../supervisor/paths.js';
import { startRun } from '../supervisor/run.js';
import type { JobConfig, RunHandle, RunObserver } from '../supervisor/types.js';
import { formatBytes } from '../supervisor/units.js';

const RUNS = Number(process.argv[2] ?? 50);
const WINDOW_MS = Number(process.argv[3] ?? 20_000);
const COMMAND = 'npm run build && node dist/bench/sampler-cost.js';

const job: JobConfig = {
  name: 'idle',
  command: [],
  options: {},
  autostart: false,
  heartbeat: 'none',
  progress_pattern: String.raw`\[HEARTBEAT\]\s*(?<done>\d+)\s*/\s*(?<total>\d+)`,
  env: {},
  after: [],
  limits: { rss: 1024 ** 3, swap: 1024 ** 3, disk_free_min: 1024 ** 2 },
  heartbeat_timeout: 0,
  stall_timeout: 0,
  max_runtime: 0,
  stop_grace: 1000,
  sample_interval: 250,
  warn_at: 0.8,
  thrash_window: 10_000,
  retries: { max: 0, backoff: 1000, factor: 2, max_backoff: 60_000, jitter: 0, on: [] },
};

let samples = 0;
const ignore = () => {};
const observer: RunObserver = { started: ignore, sample: () => samples++, progress: ignore, message: ignore, badMessage: ignore, warning: ignore, killing: ignore, diagnostics: ignore };
const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-bench-'));
const handles: RunHandle[] = [];
try {
  for (let i = 0; i < RUNS; i++) {
    handles.push(startRun({ runId: `idle-${i}`, job, attempt: 1, argv: ['sleep', '100000'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: dir, logFile: path.join(dir, `idle-${i}.log`), ipc: false, watchPaths: [dir, path.join(dir, 'warehouse.duckdb')] }, observer));
  }
  await sleep(2000);
  const processes = (await import('../supervisor/proc.js')).listPids().length;
  const before = process.cpuUsage();
  const samplesBefore = samples;
  const started = performance.now();
  await sleep(WINDOW_MS);
  const used = process.cpuUsage(before);
  const elapsed = performance.now() - started;
  const cpuMs = (used.user + used.system) / 1000;
  const percent = (100 * cpuMs) / elapsed;
  const taken = samples - samplesBefore;
  const result = {
    name: 'sampler-cost',
    date: new Date().toISOString(),
    command: COMMAND,
    runs: RUNS,
    sampleIntervalMs: job.sample_interval,
    windowMs: Math.round(elapsed),
    samplesTaken: taken,
    cpuMs: Math.round(cpuMs),
    percentOfOneCore: Number(percent.toFixed(2)),
    microsecondsPerSample: Number(((1000 * cpuMs) / taken).toFixed(1)),
    processesOnHost: processes,
    machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', memory: formatBytes(os.totalmem()), kernel: `${os.type()} ${os.release()}`, node: process.version },
  };
  const md = `# Sampling cost

The supervisor process watching ${RUNS} idle runs (\`sleep\`, one process each) at the default ${job.sample_interval} ms
interval with rss/swap/disk limits set and two watched paths per run, measured with \`process.cpuUsage()\` over
${(elapsed / 1000).toFixed(0)} s after a 2 s start-up. Everything the daemon process does is counted (timers, /proc reads,
statfs, the observer). Goal: ≤ 1% of one core.

| runs | samples taken | CPU used | % of one core | CPU per sample | processes on host |
| --- | --- | --- | --- | --- | --- |
| ${RUNS} | ${taken} | ${result.cpuMs} ms | ${result.percentOfOneCore}% | ${result.microsecondsPerSample} µs | ${processes} |

Machine: ${result.machine.cores} cores (${result.machine.cpu}), ${result.machine.memory} memory, ${result.machine.kernel}, Node ${result.machine.node}.
Shared machine; read as an order of magnitude.

Command: \`${COMMAND}\` (raw: \`bench/results/sampler-cost.json\`).
`;
  writeFileSync(path.join(projectRoot, 'bench', 'results', 'sampler-cost.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(path.join(projectRoot, 'bench', 'results', 'sampler-cost.md'), md);
  console.log(md);
} finally {
  for (const handle of handles) handle.stop('operator');
  await Promise.all(handles.map((handle) => handle.done));
  rmSync(dir, { recursive: true, force: true });
}
