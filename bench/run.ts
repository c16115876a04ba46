// `npm run bench`: the peer comparison (duckvisor vs PM2 vs supervisord+memmon, systemd on paper) on
// the seven scenarios, all in one invocation; then regenerates bench/RESULTS.md.
//
//   npm run bench                          full run (3 repetitions; ~14 minutes on a quiet 2-core machine)
//   npm run bench -- --quick               one repetition, short windows (CI, ~2 minutes)
//   npm run bench -- --scenarios fast-leak,hang --supervisors duckvisor,pm2 --reps 5
//
// Schedule: every duckvisor trial and every overhead (CPU) trial runs alone, supervisors alternating
// between repetitions so machine drift hits all equally. The peers' slow detections (PM2's 30 s and
// memmon's 60 s check periods, supervisord's 10 s stop grace) then run side by side, each under its own
// supervisor instance: their latency is set by the peer's own timer, which a neighbour cannot move.
//
// Before it starts, the run refuses to share the machine with another peer comparison, kills what an
// earlier interrupted run left (orphaned workloads, peer daemons, a swap file), and refuses a busy machine
// (other processes using CPU) unless --allow-busy; --quick only warns.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { projectRoot } from '../supervisor/paths.js';
import { assembleResults } from './assemble-results.js';
import { machineLine } from './machine.js';
import type { Driver } from './peers/driver.js';
import { DuckvisorDriver } from './peers/drivers/duckvisor.js';
import { Pm2Driver } from './peers/drivers/pm2.js';
import { SupervisordDriver } from './peers/drivers/supervisord.js';
import { describeLoad, killStrays, otherBenchRuns, sampleHostLoad, type HostLoad } from './peers/host.js';
import { ensurePeers } from './peers/install.js';
import { renderTable, type Cell } from './peers/report.js';
import { overheadSettleMs, overheadShutdownsDone, scenarios, type Scenario, type TrialResult } from './peers/scenarios.js';
import { enableSwapFile, removeStaleSwapFiles, type SwapFile } from './peers/swap.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    scenarios: { type: 'string' },
    supervisors: { type: 'string' },
    'allow-busy': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log('usage: npm run bench -- [--quick] [--reps N] [--scenarios a,b] [--supervisors duckvisor,pm2,supervisord+memmon] [--allow-busy]');
  console.log(`scenarios: ${scenarios.map((scenario) => scenario.id).join(', ')}`);
  process.exit(0);
}

const quick = values.quick ?? false;
const reps = Number(values.reps ?? (quick ? 1 : 3));
const chosenScenarios = values.scenarios ? scenarios.filter((scenario) => values.scenarios!.split(',').includes(scenario.id)) : scenarios;
const log = (line: string) => console.error(`[bench] ${line}`);
const elapsed = (since: number) => `${((Date.now() - since) / 1000).toFixed(0)} s`;

const others = otherBenchRuns();
if (others.length > 0) {
  log(`another peer comparison is running (pid ${others.join(', ')}): two at once disturb each other's numbers and share bench/work/runs; wait for it or stop it`);
  process.exit(3);
}

const workDir = path.join(projectRoot, 'bench', 'work');
for (const stray of await killStrays(projectRoot)) log(`killed pid ${stray.pid} left by an earlier run: ${stray.command.slice(0, 120)}`);
for (const file of removeStaleSwapFiles(workDir)) log(`removed a swap file left by an earlier run: ${file}`);

const hostLoad = await waitForQuietHost();
const workRoot = path.join(workDir, 'runs');
rmSync(workRoot, { recursive: true, force: true });
mkdirSync(workRoot, { recursive: true });

const missing = await ensurePeers(log);
type DriverFactory = () => Driver;
const factories: DriverFactory[] = [() => new DuckvisorDriver(), () => new Pm2Driver(), () => new SupervisordDriver()];
const chosen = factories.filter((make) => !values.supervisors || values.supervisors.split(',').includes(make().name));
const drivers = chosen.map((make) => make());
const factoryOf = new Map(drivers.map((driver, index) => [driver.name, chosen[index]!]));
const versions: string[] = [];
for (const driver of drivers) {
  versions.push(missing[driver.name] ? `${driver.name}: unavailable (${missing[driver.name]})` : await driver.version());
}

const results = new Map<string, Map<string, TrialResult[]>>();
const unavailable = new Map<string, string>();
let swap: SwapFile | string | undefined;
const removeSwap = () => {
  if (swap && typeof swap !== 'string') swap.remove();
  swap = undefined;
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    // Supervisors started with execa die with us; a PM2 daemon or an orphan is swept by the next run.
    removeSwap();
    process.exit(130);
  });
}

interface PlannedTrial {
  rep: number;
  scenario: Scenario;
  driver: Driver;
  /** Side by side only: not started before this many ms into the side-by-side phase. */
  notBeforeMs?: number;
}

function record(trial: PlannedTrial, result: TrialResult): void {
  const byDriver = results.get(trial.scenario.id) ?? new Map<string, TrialResult[]>();
  byDriver.set(trial.driver.name, [...(byDriver.get(trial.driver.name) ?? []), result]);
  results.set(trial.scenario.id, byDriver);
}

async function runTrial(trial: PlannedTrial, label: string): Promise<void> {
  const { scenario, driver } = trial;
  if (scenario.id === 'swap-thrash' && swap === undefined) swap = enableSwapFile(workDir);
  if (scenario.id === 'swap-thrash' && typeof swap === 'string') {
    unavailable.set(`${scenario.id}/${driver.name}`, `no swap here: ${swap}`);
    return;
  }
  // An overhead trial's supervisor may still be shutting down; only the next overhead trial may start meanwhile.
  if (scenario.id !== 'overhead') await overheadShutdownsDone();
  const started = Date.now();
  log(`${label} rep ${trial.rep + 1}/${reps} ${scenario.id} under ${driver.name}`);
  try {
    const result = await scenario.trial(driver, { quick, workRoot });
    log(`  → ${scenario.id}/${driver.name} (${elapsed(started)}) ${JSON.stringify(result)}`);
    record(trial, result);
  } catch (error) {
    log(`  ✗ ${driver.name} failed on ${scenario.id} (${elapsed(started)}): ${(error as Error).message}`);
    await driver.shutdown().catch(() => []);
    if (driver.name === 'duckvisor') process.exitCode = 1;
  }
}

/** One repetition of a scenario measured under every driver in the same window (scenario.trialTogether). */
async function runTogether(rep: number, scenario: Scenario, group: Driver[]): Promise<void> {
  if (scenario.id === 'overhead' && swap !== undefined && typeof swap !== 'string') {
    // The swap file is there for the swap-thrash trials only (they run earlier): the overhead trials measure
    // every supervisor on the host as configured (no swap here), not on a swap file the harness added.
    log('removing the swap file of the swap-thrash trials before the overhead trials');
    removeSwap();
  }
  const names = group.map((driver) => driver.name).join(', ');
  const started = Date.now();
  log(`together: rep ${rep + 1}/${reps} ${scenario.id} under ${names}`);
  try {
    const results = await scenario.trialTogether!(group, { quick, workRoot });
    for (const driver of group) {
      const result = results.get(driver.name);
      if (!result) continue;
      log(`  → ${scenario.id}/${driver.name} (${elapsed(started)}) ${JSON.stringify(result)}`);
      record({ rep, scenario, driver }, result);
    }
  } catch (error) {
    log(`  ✗ ${scenario.id} under ${names} failed (${elapsed(started)}): ${(error as Error).message}`);
    await Promise.all(group.map((driver) => driver.shutdown().catch(() => [])));
    if (group.some((driver) => driver.name === 'duckvisor')) process.exitCode = 1;
  }
}

/** Available memory, bytes (MemAvailable), which bounds how many leaking peer trials run at once. */
function memAvailable(): number {
  const line = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return line ? Number(line[1]) * 1024 : os.freemem();
}

/** Runs the trials side by side, as many at once as `maxParallel` and the memory budget allow. */
async function runSideBySide(trials: PlannedTrial[], maxParallel: number): Promise<void> {
  // Each trial reserves the memory its workload reaches if never stopped (3 GiB for a fast leak); the
  // total stays 4 GiB below what the machine has available, and at most 16 GiB.
  const budget = Math.max(2 * 1024 ** 3, Math.min(16 * 1024 ** 3, memAvailable() - 4 * 1024 ** 3));
  const queue = [...trials];
  const running = new Set<Promise<void>>();
  const phaseStart = Date.now();
  let reserved = 0;
  while (queue.length > 0 || running.size > 0) {
    const index = queue.findIndex((trial) => Date.now() - phaseStart >= (trial.notBeforeMs ?? 0));
    const next = index >= 0 ? queue[index] : undefined;
    const need = next?.scenario.memoryBytes ?? 0;
    if (next && running.size < maxParallel && (running.size === 0 || reserved + need <= budget)) {
      queue.splice(index, 1);
      reserved += need;
      const task: Promise<void> = runTrial(next, 'side by side:').finally(() => {
        reserved -= need;
        running.delete(task);
      });
      running.add(task);
      continue;
    }
    // Wake on a finished trial, or in a second when the next trial is only waiting for its start time.
    await Promise.race([...running, sleep(1000, undefined, { ref: false })]);
  }
}

/** Samples the host; if others use CPU, waits up to a minute for it to calm, then refuses (warns in quick mode). */
async function waitForQuietHost(): Promise<HostLoad> {
  const busyCores = 0.5;
  let load = await sampleHostLoad();
  const deadline = Date.now() + 60_000;
  while (load.busyCores > busyCores && !quick && !values['allow-busy'] && Date.now() < deadline) {
    log(`machine busy, waiting for it to calm (up to 60 s): ${describeLoad(load)}`);
    load = await sampleHostLoad(5000);
  }
  if (load.busyCores > busyCores) {
    const message = `the machine is busy: ${describeLoad(load)}. Its numbers would not be comparable with a quiet run.`;
    if (!quick && !values['allow-busy']) {
      log(`${message} Refusing to run; stop that load or pass --allow-busy (the load is then written into the results).`);
      process.exit(3);
    }
    log(`WARNING: ${message}`);
  } else {
    log(`host: ${describeLoad(load)}`);
  }
  return load;
}

const startedAt = Date.now();
try {
  // Alone, in order: every duckvisor trial and every trial a neighbour could disturb, with the order of
  // supervisors rotated every repetition so no supervisor always runs first or last. The overhead trials
  // come last: per repetition, every supervisor on fresh instances, all measured over the same minute
  // (scenarios.ts overheadTogether says why).
  const sideBySide: PlannedTrial[] = [];
  const overheadLast = [...chosenScenarios.filter((scenario) => scenario.id !== 'overhead'), ...chosenScenarios.filter((scenario) => scenario.id === 'overhead')];
  const plan: PlannedTrial[] = [];
  for (const scenario of overheadLast) {
    for (let rep = 0; rep < reps; rep += 1) {
      const order = drivers.map((_, index) => drivers[(index + rep) % drivers.length]!);
      for (const driver of order) plan.push({ rep, scenario, driver });
    }
  }
  // Scenario by scenario would put every repetition of one scenario back to back; repetition by
  // repetition (as before) spreads them over the run, so drift hits every scenario and supervisor alike.
  plan.sort((a, b) => Number(a.scenario.id === 'overhead') - Number(b.scenario.id === 'overhead') || a.rep - b.rep);
  // Scenarios measured in one window for all supervisors (overhead): one group per repetition.
  const together = new Map<string, { rep: number; scenario: Scenario; drivers: Driver[] }>();
  for (const { rep, scenario, driver } of plan) {
    const expressible = scenario.expressible[driver.name];
    const reason = missing[driver.name] ?? (expressible === true ? undefined : expressible);
    if (reason) {
      unavailable.set(`${scenario.id}/${driver.name}`, reason);
      continue;
    }
    const fresh = factoryOf.get(driver.name)!();
    if (scenario.trialTogether) {
      const key = `${scenario.id}/${rep}`;
      const group = together.get(key) ?? { rep, scenario, drivers: [] };
      group.drivers.push(fresh);
      together.set(key, group);
    } else if (scenario.concurrentFor?.(driver.name)) {
      // memmon checks on wall-clock minute boundaries (TICK_60): the repetitions start a fraction of that
      // period apart so their phases spread over the minute instead of all landing on the same boundary.
      const notBeforeMs = driver.name.startsWith('supervisord') ? rep * Math.floor(60_000 / reps) : 0;
      sideBySide.push({ rep, scenario, driver: fresh, notBeforeMs });
    } else {
      await runTrial({ rep, scenario, driver: scenario.id === 'overhead' ? fresh : driver }, 'alone:');
    }
  }
  for (const group of together.values()) await runTogether(group.rep, group.scenario, group.drivers);
  await overheadShutdownsDone();
  removeSwap();
  log(`trials that run alone took ${elapsed(startedAt)}`);
  // Longest first (memmon's 60 s period, then PM2's 30 s), so the tail is short.
  const rank = (trial: PlannedTrial) => (trial.driver.name.startsWith('supervisord') ? 0 : 1) + (trial.scenario.memoryBytes ? 0 : 2);
  sideBySide.sort((a, b) => (a.notBeforeMs ?? 0) - (b.notBeforeMs ?? 0) || rank(a) - rank(b) || a.rep - b.rep);
  const sideStarted = Date.now();
  if (sideBySide.length > 0) await runSideBySide(sideBySide, quick ? sideBySide.length : 8);
  log(`trials side by side took ${elapsed(sideStarted)}; whole run ${elapsed(startedAt)}`);
} finally {
  removeSwap();
}

const partial = values.scenarios !== undefined || values.supervisors !== undefined;
const command = `npm run bench${quick ? ' -- --quick' : ''}${values.reps ? ` -- --reps ${reps}` : ''}`;
const loadNote = `Host at start: ${describeLoad(hostLoad)}; load average at the end ${os.loadavg().map((value) => value.toFixed(2)).join(' ')}.`;
const sections = [
  '## Peer comparison: what each supervisor catches, how fast, at what cost',
  '',
  `Command: \`${command}\` (${reps} repetition${reps === 1 ? '' : 's'}${quick ? ', quick windows' : ''}; took ${((Date.now() - startedAt) / 60000).toFixed(1)} min).`,
  `Machine: ${machineLine()}.`,
  loadNote,
  `Versions: ${versions.join('; ')}.`,
  'Peers run with their defaults plus the limit users would set: PM2 `max_memory_restart` (30 s check),',
  'supervisord with `stopasgroup`/`killasgroup` and superlance `memmon -c` on `TICK_60`. duckvisor runs with its',
  'defaults (250 ms sampling, 10 s stop_grace). Every number comes from the workload\'s own timestamped log and',
  'from /proc polled every 5 ms by the harness. A peer that did not stop the process within its window is',
  '"not caught" (the window is its check period plus a margin). duckvisor trials ran alone; the peers\' leak',
  'trials and supervisord\'s stop ran side by side, each under its own supervisor instance (their latency is set by',
  'their own 30 s / 60 s check period or 10 s stop grace, which a neighbour cannot move). Overhead: per repetition',
  `every supervisor starts its ${quick ? 10 : 50} idle children (one supervisor after the other), all run ${overheadSettleMs({ quick, workRoot }) / 1000} s more (start-up`,
  'work: JIT, first heap reductions; its CPU is the "start-up" figure), then every supervisor\'s own CPU time is',
  `measured over the same ${quick ? 10 : 60} s window, so drift hits all of them alike; no swap is configured during it.`,
  '',
];
const json: Record<string, unknown> = { command, machine: machineLine(), hostLoad, versions, quick, reps, scenarios: {} };
for (const scenario of chosenScenarios) {
  const cells: Cell[] = drivers.map((driver) => ({
    driver: driver.name,
    unavailable: unavailable.get(`${scenario.id}/${driver.name}`),
    results: results.get(scenario.id)?.get(driver.name) ?? [],
  }));
  sections.push(renderTable(scenario, cells, { quick }));
  (json.scenarios as Record<string, unknown>)[scenario.id] = cells;
}
console.log(sections.join('\n'));
if (partial) {
  // A subset is a check, not a result: it stays out of bench/results and RESULTS.md.
  writeFileSync(path.join(workDir, 'peers-partial.json'), JSON.stringify(json, null, 2));
  writeFileSync(path.join(workDir, 'peers-partial.md'), sections.join('\n'));
  log('partial run (--scenarios/--supervisors): results written to bench/work/peers-partial.{json,md} only');
} else {
  const resultsDir = path.join(projectRoot, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(path.join(resultsDir, quick ? 'peers-quick.json' : 'peers.json'), JSON.stringify(json, null, 2));
  if (!quick) writeFileSync(path.join(resultsDir, 'peers.md'), sections.join('\n'));
  if (!quick) assembleResults();
}
