// Reads the timestamped state lines a workload writes about itself (bench/workloads/state-log.mjs).
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface StateEntry {
  t: number;
  pid: number;
  event: string;
  rss?: number;
  swap?: number;
  child?: number;
  pids?: number[];
  [key: string]: unknown;
}

export function readStateLog(file: string): StateEntry[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const entries: StateEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      entries.push(JSON.parse(line) as StateEntry);
    } catch {
      // a line cut by the kill: ignore it
    }
  }
  return entries;
}

/** Waits until the log holds an entry matching `predicate`. */
export async function waitForEntry(file: string, predicate: (entry: StateEntry) => boolean, timeoutMs: number): Promise<StateEntry> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readStateLog(file).find(predicate);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching entry in ${file} within ${timeoutMs} ms`);
    await sleep(10);
  }
}
