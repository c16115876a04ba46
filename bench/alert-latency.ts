// Alert latency: how long after a memory kill a human's hook hears about it. The real `duckvisord` runs a
// leaker job (limits.rss 120 MiB) with three alert hooks on `killed`: a Node command hook, a /bin/sh command
// hook (to separate the dispatcher from Node's start-up), and a webhook to a local HTTP receiver in this
// process. For N kills (argv[2], default 10), one after another, each delivery's arrival is compared with
// the run's `kill` event (the decision) and with its `ended_at` (every process confirmed dead), both from
// history via `duckvisorctl show --json`.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../supervisor/paths.js';
import { formatBytes } from '../supervisor/units.js';
import { ctl, ctlJson, fixture, waitFor } from '../test/helpers/duckvisord.js';
import { envWithoutSystemd, killGroup, readJsonLines, spawnDaemonWithEnv, startWebhookReceiver, stopDaemon } from '../test/helpers/ops.js';

const COMMAND = 'npm run build && node dist/bench/alert-latency.js 10';
const LIMIT_MIB = 120;
const RATE_MIB_S = 200;
const hooks = ['command (node)', 'command (sh)', 'webhook'] as const;
type Hook = (typeof hooks)[number];

interface Kill {
  run: string;
  reason: string | null;
  measured: number;
  killAt: number;
  endedAt: number;
  /** Arrival of each hook's delivery, ms since epoch. */
  received: Record<Hook, number>;
  fromKill: Record<Hook, number>;
  fromEnd: Record<Hook, number>;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const repetitions = Number(process.argv[2] ?? 10);
const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-bench-alerts-'));
const nodeHookFile = path.join(dir, 'node-hook.jsonl');
const shHookFile = path.join(dir, 'sh-hook.txt');
const receiver = await startWebhookReceiver();
const config = path.join(dir, 'duckvisor.yaml');
const q = JSON.stringify;
writeFileSync(
  config,
  `state_dir: ./state
control:
  socket: ./run/dv.sock
defaults:
  stop_grace: 2s
  retries: {max: 0}
jobs:
  leak:
    command: [${q(process.execPath)}, ${q(fixture('ops-leaker.mjs'))}, "${RATE_MIB_S}"]
    heartbeat: stdout
    autostart: false
    limits: {rss: ${LIMIT_MIB}MiB}
alerts:
  - on: [killed]
    command: [${q(process.execPath)}, ${q(fixture('alert-append.mjs'))}, ${q(nodeHookFile)}]
  - on: [killed]
    command: [/bin/sh, -c, 'cat > /dev/null; printf "%s %s\\n" "$DUCKVISOR_RUN_ID" "$(date +%s%3N)" >> "$0"', ${q(shHookFile)}]
  - on: [killed]
    webhook: ${receiver.url}/alert
`,
);

const daemon = spawnDaemonWithEnv(config, envWithoutSystemd());
const kills: Kill[] = [];
try {
  await waitFor(async () => (await ctl(['--config', config, 'status', '--json'])).code === 0, 20_000, `the daemon to answer:\n${daemon.output()}`);
  for (let i = 0; i < repetitions; i++) {
    const started = (await ctlJson(config, 'start', 'leak')).run;
    const shown = await waitFor(async () => {
      const detail = await ctlJson(config, 'show', started.id);
      return ['killed', 'failed', 'succeeded', 'interrupted'].includes(detail.state) ? detail : null;
    }, 30_000, `run ${started.id} to end`);
    if (shown.pid) killGroup(shown.pid); // safety: the daemon has confirmed it dead already
    const received = await waitFor(() => {
      const node = readJsonLines(nodeHookFile).find((line) => line.event.run === started.id)?.received_at as number | undefined;
      const sh = readFileSync(shHookFile, { encoding: 'utf8', flag: 'a+' })
        .split('\n')
        .map((line) => line.split(' '))
        .find(([run]) => run === started.id)?.[1];
      const webhook = receiver.hits.find((hit) => hit.body?.run === started.id)?.receivedAt;
      return node && sh && webhook ? { 'command (node)': node, 'command (sh)': Number(sh), webhook } : null;
    }, 30_000, `the three deliveries for ${started.id}`);
    const killEvent = shown.events.find((event: any) => event.kind === 'kill');
    const killAt = Date.parse(killEvent.at);
    const endedAt = Date.parse(shown.ended_at);
    const fromKill = Object.fromEntries(hooks.map((hook) => [hook, received[hook] - killAt])) as Record<Hook, number>;
    const fromEnd = Object.fromEntries(hooks.map((hook) => [hook, received[hook] - endedAt])) as Record<Hook, number>;
    kills.push({ run: started.id, reason: shown.reason, measured: killEvent.measured, killAt, endedAt, received, fromKill, fromEnd });
    console.log(`#${i + 1} ${started.id} (${shown.reason}): kill→ ${hooks.map((hook) => `${hook} ${fromKill[hook]} ms`).join(', ')}; run end→ ${hooks.map((hook) => `${hook} ${fromEnd[hook]} ms`).join(', ')}`);
  }
  await ctl(['--config', config, 'shutdown']);
  await daemon.exited;
} finally {
  await stopDaemon(daemon);
  await receiver.close();
  rmSync(dir, { recursive: true, force: true });
}

const machine = {
  cores: os.cpus().length,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  memory: formatBytes(os.totalmem()),
  kernel: `${os.type()} ${os.release()}`,
  node: process.version,
};
const summary = (values: number[]) => ({ median: median(values), min: Math.min(...values), max: Math.max(...values) });
const stats = Object.fromEntries(
  hooks.map((hook) => [hook, { fromKill: summary(kills.map((k) => k.fromKill[hook])), fromEnd: summary(kills.map((k) => k.fromEnd[hook])) }]),
) as Record<Hook, { fromKill: ReturnType<typeof summary>; fromEnd: ReturnType<typeof summary> }>;
const stopSequence = summary(kills.map((k) => k.endedAt - k.killAt));
const json = {
  name: 'alert-latency',
  date: new Date().toISOString(),
  command: COMMAND,
  settings: { limitBytes: LIMIT_MIB * 1024 * 1024, leakerRateMiBps: RATE_MIB_S, sampleIntervalMs: 250, repetitions },
  machine,
  stats,
  stopSequence,
  kills,
};
const cell = (s: { median: number; min: number; max: number }) => `${s.median} ms | ${s.min}–${s.max} ms`;
const markdown = `# Alert latency after a memory kill

The real \`duckvisord\` supervises a leaker growing ~${RATE_MIB_S} MiB/s (\`test/fixtures/ops-leaker.mjs\`) with
\`limits.rss\` = ${LIMIT_MIB} MiB. Three hooks subscribe to \`killed\`: a Node command hook
(\`test/fixtures/alert-append.mjs\`, timestamps after reading stdin), a \`/bin/sh\` command hook (\`date +%s%3N\` after
reading stdin) and a webhook to a local HTTP receiver in the bench process (timestamp when the request
arrives). ${repetitions} kills, one after another, ${json.date.slice(0, 10)}. "Kill decision" is the run's \`kill\` event in
history; "run end" is its \`ended_at\` (every process of the tree confirmed dead, state written), after which
the daemon dispatches the alerts.

| delivery | kill decision → arrival: median | min–max | run end → arrival: median | min–max |
| --- | --- | --- | --- | --- |
${hooks.map((hook) => `| ${hook} | ${cell(stats[hook].fromKill)} | ${cell(stats[hook].fromEnd)} |`).join('\n')}

The stop sequence itself (kill decision → run end) took ${cell(stopSequence).replace(' | ', ', range ')}.
Every run ended with reason \`${[...new Set(kills.map((k) => k.reason))].join(', ')}\`. The issue asks for delivery within 2 s.

Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memory} memory, ${machine.kernel}, Node ${machine.node}.
The machine was shared with other work while this ran; read the numbers as orders of magnitude.

Command: \`${COMMAND}\` (raw numbers: \`bench/results/alert-latency.json\`).
`;
writeFileSync(path.join(projectRoot, 'bench', 'results', 'alert-latency.json'), `${JSON.stringify(json, null, 2)}\n`);
writeFileSync(path.join(projectRoot, 'bench', 'results', 'alert-latency.md'), markdown);
console.log(markdown);
