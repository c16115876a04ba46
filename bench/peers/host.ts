// The host before a peer comparison: no other comparison running, nothing left by an earlier run, and
// no other load that would move the numbers. A busy machine is named (which processes, how much CPU) so a
// human sees why a run refuses to start or why its numbers may be off.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { allPids, descendantsOf, isAlive, killQuietly, readCmdline, readEnviron, readProcStat, waitForDeath } from './proc-watch.js';

/** This process and its ancestors (npm, the `sh -c … node dist/bench/run.js` it starts), which are not "others". */
function ownLineage(): Set<number> {
  const lineage = new Set<number>();
  for (let pid = process.pid; pid > 1 && !lineage.has(pid); pid = readProcStat(pid)?.ppid ?? 0) lineage.add(pid);
  return lineage;
}

/** Other live peer comparisons (`node …/bench/run.js`), which would disturb ours and share our work folder. */
export function otherBenchRuns(): number[] {
  const own = ownLineage();
  return allPids().filter((pid) => !own.has(pid) && /\bbench\/run\.js\b/.test(readCmdline(pid)) && isAlive(pid));
}

/**
 * Processes left by an earlier run: peer daemons whose configuration or home lives in the work folder
 * (duckvisord, supervisord, PM2's God daemon), everything under them, and workload processes that were
 * orphaned (reparented to init). A workload whose parent is alive belongs to someone (another benchmark)
 * and is left alone.
 */
export function findStrays(projectRoot: string): { pid: number; command: string }[] {
  const runsDir = path.join(projectRoot, 'bench', 'work', 'runs') + '/';
  const workloadsDir = path.join(projectRoot, 'bench', 'workloads') + '/';
  const strays = new Set<number>();
  for (const pid of allPids()) {
    if (pid === process.pid || !isAlive(pid)) continue;
    const command = readCmdline(pid);
    if (!command) continue;
    const daemon = command.includes(runsDir) && /duckvisord|supervisord|God Daemon/.test(command);
    const orphan = readProcStat(pid)?.ppid === 1 && (command.includes(workloadsDir) || command.includes(runsDir) || readEnviron(pid).includes(runsDir));
    if (daemon) for (const member of [pid, ...descendantsOf(pid, allPids)]) strays.add(member);
    else if (orphan) strays.add(pid);
  }
  return [...strays].map((pid) => ({ pid, command: readCmdline(pid) }));
}

/** SIGKILLs the strays and waits for them; returns what was killed. */
export async function killStrays(projectRoot: string): Promise<{ pid: number; command: string }[]> {
  const strays = findStrays(projectRoot);
  killQuietly(strays.map((stray) => stray.pid));
  await waitForDeath(strays.map((stray) => stray.pid), 5_000);
  return strays;
}

export interface HostLoad {
  /** 1-, 5- and 15-minute load averages. */
  loadAverage: number[];
  /** CPU used by other processes during the sample, in cores. */
  busyCores: number;
  /** The heaviest other processes during the sample. */
  top: { pid: number; command: string; cores: number }[];
}

function cpuTicksByPid(): Map<number, number> {
  const ticks = new Map<number, number>();
  for (const pid of allPids()) {
    const stat = readProcStat(pid);
    if (stat) ticks.set(pid, stat.cpuSeconds);
  }
  return ticks;
}

function totalBusySeconds(): number {
  // First line of /proc/stat: user nice system idle iowait irq softirq steal … in clock ticks (100/s).
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return (fields.slice(0, 8).reduce((sum, value) => sum + value, 0) - idle) / 100;
}

/** Samples the machine for `sampleMs`: CPU used by everything but this process, and who used it. */
export async function sampleHostLoad(sampleMs = 2000): Promise<HostLoad> {
  const before = cpuTicksByPid();
  const busyBefore = totalBusySeconds();
  const ownBefore = process.cpuUsage();
  const startedAt = Date.now();
  await sleep(sampleMs);
  const seconds = (Date.now() - startedAt) / 1000;
  const own = process.cpuUsage(ownBefore);
  const busyCores = Math.max(0, totalBusySeconds() - busyBefore - (own.user + own.system) / 1e6) / seconds;
  const top: HostLoad['top'] = [];
  for (const [pid, after] of cpuTicksByPid()) {
    if (pid === process.pid) continue;
    const cores = (after - (before.get(pid) ?? after)) / seconds;
    if (cores >= 0.05) top.push({ pid, command: readCmdline(pid).slice(0, 80) || `pid ${pid}`, cores });
  }
  top.sort((a, b) => b.cores - a.cores);
  return { loadAverage: os.loadavg(), busyCores, top: top.slice(0, 5) };
}

export function describeLoad(load: HostLoad): string {
  const who = load.top.map((entry) => `${entry.command} (${entry.cores.toFixed(2)})`).join('; ');
  return `load average ${load.loadAverage.map((value) => value.toFixed(2)).join(' ')}; other processes used ${load.busyCores.toFixed(2)} of ${os.cpus().length} cores${who ? `: ${who}` : ''}`;
}
