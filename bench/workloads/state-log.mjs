// Shared by the Node workloads: append the process's own state, with a wall-clock timestamp, to the
// file named by BENCH_STATE_LOG, so measurements never trust a supervisor's own account.
import { appendFileSync, readFileSync } from 'node:fs';

const target = process.env.BENCH_STATE_LOG;

export function treeMemory(pid = process.pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: field('VmRSS'), swap: field('VmSwap') };
}

export function logState(event, fields = {}) {
  if (!target) return;
  appendFileSync(target, JSON.stringify({ t: Date.now(), pid: process.pid, event, ...fields }) + '\n');
}
