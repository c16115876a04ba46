// Turns trial results into the markdown table of bench/results/peers.md: median with min–max per
// cell, caught counts, the duckvisor/peer ratio, and whether each stated goal is met.
import type { Scenario, TrialResult } from './scenarios.js';

export interface Cell {
  driver: string;
  /** Set when the driver cannot express the scenario or could not be installed. */
  unavailable?: string;
  results: TrialResult[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function spread(values: number[], format: (value: number) => string): string {
  if (values.length === 0) return '–';
  const low = Math.min(...values);
  const high = Math.max(...values);
  return values.length === 1 ? format(values[0]!) : `${format(median(values))} (${format(low)}–${format(high)})`;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
const mebibytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
const percent = (value: number) => `${value.toFixed(2)} %`;

/** The primary number of a scenario, used for the ratio column. */
function primary(scenario: Scenario, results: TrialResult[]): number[] {
  if (scenario.id === 'overhead') return results.map((result) => result.cpuPercent ?? NaN).filter(Number.isFinite);
  return results.filter((result) => result.caught && result.latencyMs !== undefined).map((result) => result.latencyMs!);
}

function describe(scenario: Scenario, cell: Cell): string {
  if (cell.unavailable) return `cannot express: ${cell.unavailable}`;
  const { results } = cell;
  if (results.length === 0) return 'not run';
  const leftovers = results.reduce((sum, result) => sum + (result.leftovers ?? 0), 0);
  // A shutdown that left processes behind is part of the result, not a harness detail.
  const leftNote = leftovers > 0 ? `; its shutdown left ${leftovers} process${leftovers === 1 ? '' : 'es'} running (killed by the harness)` : '';
  if (scenario.id === 'overhead') {
    const startup = results.map((result) => result.startupCpuPercent).filter((value): value is number => value !== undefined && Number.isFinite(value));
    const startupNote = startup.length > 0 ? `; start-up ${spread(startup, percent)}` : '';
    return `CPU ${spread(primary(scenario, results), percent)}; RSS ${spread(results.map((result) => result.supervisorRss ?? 0), mebibytes)}${startupNote}${leftNote}`;
  }
  const caught = results.filter((result) => result.caught).length;
  const window = seconds(Math.max(...results.map((result) => result.windowMs)));
  const parts = [caught === results.length ? `caught ${caught}/${results.length}` : `caught ${caught}/${results.length} (window ${window})`];
  if (caught > 0) parts.push(spread(primary(scenario, results), seconds));
  const peaks = results.map((result) => result.peakBytes).filter((value): value is number => value !== undefined && value > 0);
  if (peaks.length > 0) parts.push(`peak ${spread(peaks, mebibytes)}`);
  const survivors = results.map((result) => result.survivors).filter((value): value is number => value !== undefined);
  if (survivors.length > 0) parts.push(`survivors ${spread(survivors, (value) => value.toFixed(0))}`);
  return parts.join('; ') + leftNote;
}

function ratio(scenario: Scenario, ours: Cell | undefined, peer: Cell): string {
  if (!ours || ours.results.length === 0) return '–';
  if (peer.unavailable || peer.results.length === 0) return '–';
  const mine = primary(scenario, ours.results);
  const theirs = primary(scenario, peer.results);
  if (mine.length === 0) return 'duckvisor did not catch it';
  if (theirs.length === 0) return `peer never caught it in ${seconds(Math.max(...peer.results.map((result) => result.windowMs)))}`;
  return `${(median(mine) / median(theirs)).toFixed(3)}×`;
}

/** systemd MemoryMax cannot run here (systemd is not PID 1); its column states what its documentation implies. */
const systemdOnPaper: Record<string, string> = {
  'fast-leak': 'on paper: kernel OOM kill at memory.max (no overshoot), but only as a whole-unit cgroup limit',
  'grandchild-leak': 'on paper: caught (cgroup counts the whole tree)',
  'swap-thrash': 'on paper: MemorySwapMax caps swap; no kill on swap use',
  hang: 'on paper: not caught (WatchdogSec needs the job to speak sd_notify)',
  'blocked-loop': 'on paper: only with sd_notify watchdog pings from the job',
  'stubborn-tree': 'on paper: 0 survivors (cgroup kill), after TimeoutStopSec (90 s default)',
  overhead: 'on paper: in-kernel accounting, no daemon',
};

export function renderTable(scenario: Scenario, cells: Cell[], options: { quick?: boolean } = {}): string {
  const ours = cells.find((cell) => cell.driver === 'duckvisor');
  const lines = [
    `### ${scenario.title}`,
    '',
    '| supervisor | result: median (min–max) | duckvisor / peer |',
    '| --- | --- | --- |',
  ];
  for (const cell of cells) {
    lines.push(`| ${cell.driver} | ${describe(scenario, cell)} | ${cell.driver === 'duckvisor' ? '1×' : ratio(scenario, ours, cell)} |`);
  }
  lines.push(`| systemd MemoryMax | ${systemdOnPaper[scenario.id] ?? 'on paper: –'} | – |`);
  const peers = new Map(cells.filter((cell) => cell.driver !== 'duckvisor' && cell.unavailable === undefined).map((cell) => [cell.driver, cell.results]));
  const met = ours !== undefined && ours.results.length > 0 && scenario.goalMet(ours.results, peers);
  const verdict = ours === undefined ? 'not measured in this run' : options.quick === true && scenario.quickCaveat !== undefined ? `not judged: ${scenario.quickCaveat}` : met ? 'met' : 'NOT met';
  lines.push('', `Goal for duckvisor: ${scenario.goal} — **${verdict}**.`, '');
  return lines.join('\n');
}
