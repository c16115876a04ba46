// Kill latency: how long a leaker growing ~100 MB/s lives past its RSS limit, and how far it gets.
// For N repetitions (argv[2], default 7) the leaker fixture runs under startRun with limits.rss 200 MiB
// and the default 250 ms sampling; the leaker logs {t, rss} every 20 ms to stderr (the run's log), so
// the crossing time comes from the leaker itself, not from the supervisor under test.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../supervisor/paths.js';
import { startRun } from '../supervisor/run.js';
import type { JobConfig, RunObserver } from '../supervisor/types.js';
import { formatBytes } from '../supervisor/units.js';

const MiB = 1024 * 1024;
const LIMIT = 200 * MiB;
const SAMPLE_INTERVAL = 250;
const RATE_MB_S = 100;
const COMMAND = 'npm run build && node dist/bench/kill-latency.js';

interface Repetition {
  crossedAt: number;
  decidedAt: number;
  deadAt: number;
  detectionMs: number;
  deathMs: number;
  measuredAtKill: number;
  peakRssSampled: number;
  peakRssLogged: number;
  reason: string | null;
  survivors: number;
}

function job(): JobConfig {
  return {
    name: 'kill-latency',
    command: [],
    options: {},
    autostart: false,
    heartbeat: 'none',
    progress_pattern: String.raw`\[HEARTBEAT\]\s*(?<done>\d+)\s*/\s*(?<total>\d+)`,
    env: {},
    after: [],
    limits: { rss: LIMIT },
    heartbeat_timeout: 0,
    stall_timeout: 0,
    max_runtime: 60_000,
    stop_grace: 2000,
    sample_interval: SAMPLE_INTERVAL,
    warn_at: 0.8,
    thrash_window: 10_000,
    retries: { max: 0, backoff: 1000, factor: 2, max_backoff: 60_000, jitter: 0, on: [] },
  };
}

async function once(dir: string, index: number): Promise<Repetition> {
  let decidedAt = 0;
  let measuredAtKill = 0;
  const ignore = () => {};
  const observer: RunObserver = {
    started: ignore,
    sample: ignore,
    progress: ignore,
    message: ignore,
    badMessage: ignore,
    warning: ignore,
    killing: (_reason, measured) => {
      decidedAt = Date.now();
      measuredAtKill = measured ?? 0;
    },
    diagnostics: ignore,
  };
  const logFile = path.join(dir, `run-${index}.log`);
  const handle = startRun(
    {
      runId: `bench-${index}`,
      job: job(),
      attempt: 1,
      argv: [process.execPath, path.join(projectRoot, 'test', 'fixtures', 'leaker.mjs'), String(RATE_MB_S)],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      cwd: dir,
      logFile,
      ipc: false,
      watchPaths: [dir],
    },
    observer,
  );
  const outcome = await handle.done;
  const deadAt = Date.now();
  const points = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { t: number; rss: number });
  const crossing = points.find((point) => point.rss > LIMIT);
  if (!crossing) throw new Error(`repetition ${index}: the leaker never logged an RSS above the limit (${outcome.reason})`);
  return {
    crossedAt: crossing.t,
    decidedAt,
    deadAt,
    detectionMs: decidedAt - crossing.t,
    deathMs: deadAt - crossing.t,
    measuredAtKill,
    peakRssSampled: outcome.peakRss,
    peakRssLogged: Math.max(...points.map((point) => point.rss)),
    reason: outcome.reason,
    survivors: outcome.survivors.length,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const repetitions = Number(process.argv[2] ?? 7);
const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-bench-'));
const results: Repetition[] = [];
try {
  for (let i = 0; i < repetitions; i++) {
    const result = await once(dir, i);
    results.push(result);
    console.log(`#${i + 1}: reason ${result.reason}, crossing→kill decision ${result.detectionMs} ms, crossing→confirmed death ${result.deathMs} ms, peak RSS ${formatBytes(result.peakRssLogged)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const machine = {
  cores: os.cpus().length,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  memory: formatBytes(os.totalmem()),
  kernel: `${os.type()} ${os.release()}`,
  node: process.version,
};
const column = (pick: (r: Repetition) => number) => results.map(pick);
const summary = (values: number[]) => ({ median: median(values), min: Math.min(...values), max: Math.max(...values) });
const stats = {
  detectionMs: summary(column((r) => r.detectionMs)),
  deathMs: summary(column((r) => r.deathMs)),
  peakRssLogged: summary(column((r) => r.peakRssLogged)),
  overshoot: summary(column((r) => r.peakRssLogged - LIMIT)),
};
const json = {
  name: 'kill-latency',
  date: new Date().toISOString(),
  command: COMMAND,
  settings: { limitBytes: LIMIT, sampleIntervalMs: SAMPLE_INTERVAL, leakerRateMBps: RATE_MB_S, repetitions },
  machine,
  stats,
  repetitions: results,
};
const ms = (s: { median: number; min: number; max: number }) => `${s.median} ms | ${s.min}–${s.max} ms`;
const bytes = (s: { median: number; min: number; max: number }) => `${formatBytes(s.median)} | ${formatBytes(s.min)}–${formatBytes(s.max)}`;
const markdown = `# Kill latency of a memory overrun

A Node leaker growing ~${RATE_MB_S} MB/s (\`test/fixtures/leaker.mjs\`, logging its own RSS every 20 ms with a
timestamp) runs under \`startRun\` with \`limits.rss\` = ${formatBytes(LIMIT)} and the default ${SAMPLE_INTERVAL} ms sampling
(4× faster above 80% of a limit). Latencies start at the first line where the leaker itself logged an RSS above
the limit; "confirmed death" is when the run's \`done\` resolved (every process of the tree confirmed dead in
/proc and reaped). ${repetitions} repetitions, ${json.date.slice(0, 10)}.

| measure | median | min–max |
| --- | --- | --- |
| crossing → kill decision | ${ms(stats.detectionMs)} |
| crossing → confirmed death | ${ms(stats.deathMs)} |
| peak RSS reached (leaker's log) | ${bytes(stats.peakRssLogged)} |
| overshoot above the limit | ${bytes(stats.overshoot)} |

Every repetition ended with reason \`${[...new Set(results.map((r) => r.reason))].join(', ')}\` and ${results.reduce((sum, r) => sum + r.survivors, 0)} survivors.

Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memory} memory, ${machine.kernel}, Node ${machine.node}.
The machine was shared with other work while this ran; read the numbers as orders of magnitude.

Command: \`${COMMAND}\` (raw numbers: \`bench/results/kill-latency.json\`).
`;
writeFileSync(path.join(projectRoot, 'bench', 'results', 'kill-latency.json'), `${JSON.stringify(json, null, 2)}\n`);
writeFileSync(path.join(projectRoot, 'bench', 'results', 'kill-latency.md'), markdown);
console.log(markdown);
