// `npm run bench`: the peer comparison (duckvisor vs PM2 vs supervisord+memmon, systemd on paper) on
// the seven scenarios, all in one invocation, alternating supervisors between repetitions so machine
// drift hits all equally; then regenerates bench/RESULTS.md.
//
//   npm run bench                          full run (3 repetitions; ~12 minutes)
//   npm run bench -- --quick               one repetition, short windows (CI)
//   npm run bench -- --scenarios fast-leak,hang --supervisors duckvisor,pm2 --reps 5
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../supervisor/paths.js';
import { assembleResults } from './assemble-results.js';
import { machineLine } from './machine.js';
import type { Driver } from './peers/driver.js';
import { DuckvisorDriver } from './peers/drivers/duckvisor.js';
import { Pm2Driver } from './peers/drivers/pm2.js';
import { SupervisordDriver } from './peers/drivers/supervisord.js';
import { ensurePeers } from './peers/install.js';
import { renderTable, type Cell } from './peers/report.js';
import { scenarios, type TrialResult } from './peers/scenarios.js';
import { enableSwapFile } from './peers/swap.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    scenarios: { type: 'string' },
    supervisors: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log('usage: npm run bench -- [--quick] [--reps N] [--scenarios a,b] [--supervisors duckvisor,pm2,supervisord+memmon]');
  console.log(`scenarios: ${scenarios.map((scenario) => scenario.id).join(', ')}`);
  process.exit(0);
}

const quick = values.quick ?? false;
const reps = Number(values.reps ?? (quick ? 1 : 3));
const chosenScenarios = values.scenarios ? scenarios.filter((scenario) => values.scenarios!.split(',').includes(scenario.id)) : scenarios;
const log = (line: string) => console.error(`[bench] ${line}`);

const workRoot = path.join(projectRoot, 'bench', 'work', 'runs');
rmSync(workRoot, { recursive: true, force: true });
mkdirSync(workRoot, { recursive: true });

const missing = await ensurePeers(log);
const allDrivers: Driver[] = [new DuckvisorDriver(), new Pm2Driver(), new SupervisordDriver()];
const drivers = values.supervisors ? allDrivers.filter((driver) => values.supervisors!.split(',').includes(driver.name)) : allDrivers;
const versions: string[] = [];
for (const driver of drivers) {
  versions.push(missing[driver.name] ? `${driver.name}: unavailable (${missing[driver.name]})` : await driver.version());
}

const results = new Map<string, Map<string, TrialResult[]>>();
const unavailable = new Map<string, string>();
const swap = chosenScenarios.some((scenario) => scenario.id === 'swap-thrash') ? await enableSwapFile(path.join(projectRoot, 'bench', 'work')) : undefined;
const startedAt = Date.now();
try {
  for (let rep = 0; rep < reps; rep += 1) {
    for (const scenario of chosenScenarios) {
      // Rotate the order every repetition so no supervisor always runs first or last.
      const order = drivers.map((_, index) => drivers[(index + rep) % drivers.length]!);
      for (const driver of order) {
        const key = `${scenario.id}/${driver.name}`;
        const expressible = scenario.expressible[driver.name];
        const reason = missing[driver.name] ?? (expressible === true ? undefined : expressible) ??
          (scenario.id === 'swap-thrash' && typeof swap === 'string' ? `no swap here: ${swap}` : undefined);
        if (reason) {
          unavailable.set(key, reason);
          continue;
        }
        log(`rep ${rep + 1}/${reps} ${scenario.id} under ${driver.name}`);
        try {
          const result = await scenario.trial(driver, { quick, workRoot });
          log(`  → ${JSON.stringify(result)}`);
          const byDriver = results.get(scenario.id) ?? new Map<string, TrialResult[]>();
          byDriver.set(driver.name, [...(byDriver.get(driver.name) ?? []), result]);
          results.set(scenario.id, byDriver);
        } catch (error) {
          log(`  ✗ ${driver.name} failed on ${scenario.id}: ${(error as Error).message}`);
          await driver.shutdown().catch(() => undefined);
          if (driver.name === 'duckvisor') process.exitCode = 1;
        }
      }
    }
  }
} finally {
  if (swap && typeof swap !== 'string') await swap.remove();
}

const command = `npm run bench${quick ? ' -- --quick' : ''}${values.reps ? ` -- --reps ${reps}` : ''}`;
const sections = [
  '## Peer comparison: what each supervisor catches, how fast, at what cost',
  '',
  `Command: \`${command}\` (${reps} repetition${reps === 1 ? '' : 's'}${quick ? ', quick windows' : ''}; took ${((Date.now() - startedAt) / 60000).toFixed(1)} min).`,
  `Machine: ${machineLine()}.`,
  `Versions: ${versions.join('; ')}.`,
  'Peers run with their defaults plus the limit users would set: PM2 `max_memory_restart` (30 s check),',
  'supervisord with `stopasgroup`/`killasgroup` and superlance `memmon -c` on `TICK_60`. duckvisor runs with its',
  'defaults (250 ms sampling, 10 s stop_grace). Every number comes from the workload\'s own timestamped log and',
  'from /proc polled every 5 ms by the harness. A peer that did not stop the process within its window is',
  '"not caught" (the window is its check period plus a margin).',
  '',
];
const json: Record<string, unknown> = { command, machine: machineLine(), versions, quick, reps, scenarios: {} };
for (const scenario of chosenScenarios) {
  const cells: Cell[] = drivers.map((driver) => ({
    driver: driver.name,
    unavailable: unavailable.get(`${scenario.id}/${driver.name}`),
    results: results.get(scenario.id)?.get(driver.name) ?? [],
  }));
  sections.push(renderTable(scenario, cells));
  (json.scenarios as Record<string, unknown>)[scenario.id] = cells;
}
const resultsDir = path.join(projectRoot, 'bench', 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(path.join(resultsDir, quick ? 'peers-quick.json' : 'peers.json'), JSON.stringify(json, null, 2));
if (!quick) writeFileSync(path.join(resultsDir, 'peers.md'), sections.join('\n'));
console.log(sections.join('\n'));
if (!quick) assembleResults();
