// Post-mortem material captured at the moment of a limit kill, while the processes still exist: the
// status and smaps_rollup of the tree's biggest processes and the end of the run's log, in one text.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readProcText } from './proc.js';
import type { TreeMember } from './sample.js';
import { formatBytes } from './units.js';

/** How many of the biggest processes (by RSS) get their /proc files copied. */
export const DIAGNOSED_PROCESSES = 3;
/** Log lines included. */
export const LOG_TAIL_LINES = 20;

/** The last `lines` lines of a file (reads at most the final 256 KiB); '' when it cannot be read. */
export function tailFile(file: string, lines: number): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, 256 * 1024);
    const buffer = Buffer.alloc(length);
    let read = 0;
    while (read < length) {
      const n = readSync(fd, buffer, read, length - read, size - length + read);
      if (n === 0) break;
      read += n;
    }
    const text = buffer.toString('utf8', 0, read).replace(/\n$/, '');
    const all = text.split('\n');
    return all.slice(Math.max(0, all.length - lines)).join('\n');
  } catch {
    return '';
  } finally {
    closeSync(fd);
  }
}

export interface DiagnosticsInput {
  reason: string;
  detail: string;
  members: readonly TreeMember[];
  logFile: string;
  at?: number;
}

// Everything a post-mortem needs, in plain text so it can be stored in a history row and read in a terminal.
/** Builds the diagnostics text of a kill. Synchronous and bounded: a few small /proc reads and one log tail. */
export function captureDiagnostics(input: DiagnosticsInput): string {
  const at = new Date(input.at ?? Date.now()).toISOString();
  const members = [...input.members].sort((a, b) => b.rss + b.swap - (a.rss + a.swap));
  const lines: string[] = [
    `kill: ${input.reason} at ${at}`,
    `detail: ${input.detail}`,
    `tree: ${members.length} processes, RSS ${formatBytes(members.reduce((sum, m) => sum + m.rss, 0))}, swap ${formatBytes(members.reduce((sum, m) => sum + m.swap, 0))}`,
  ];
  for (const member of members) {
    lines.push(`  pid ${member.pid} (${member.stat.comm}) ppid ${member.stat.ppid} pgrp ${member.stat.pgrp} state ${member.stat.state} rss ${formatBytes(member.rss)} swap ${formatBytes(member.swap)}`);
  }
  for (const member of members.slice(0, DIAGNOSED_PROCESSES)) {
    lines.push('', `=== /proc/${member.pid}/status`, (readProcText(`/proc/${member.pid}/status`) ?? '(gone)\n').trimEnd());
    lines.push('', `=== /proc/${member.pid}/smaps_rollup`, (readProcText(`/proc/${member.pid}/smaps_rollup`) ?? '(unavailable)\n').trimEnd());
  }
  lines.push('', `=== last ${LOG_TAIL_LINES} lines of ${input.logFile}`, tailFile(input.logFile, LOG_TAIL_LINES));
  return lines.join('\n') + '\n';
}
