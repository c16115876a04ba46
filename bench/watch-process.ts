// One child of a bench, run to completion (or killed with its process group at a timeout) while its
// peak RSS (VmHWM) and CPU time are polled from /proc: the measurement bench/extract and
// bench/artifacts-speed share.
import { readFileSync } from 'node:fs';
import type { ResultPromise } from 'execa';

const CLK_TCK = 100;

export interface ProcSample {
  hwm: number;
  cpuMs: number;
}

export function sampleProc(pid: number): ProcSample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    return { hwm: hwm ? Number(hwm[1]) * 1024 : 0, cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK };
  } catch {
    return undefined;
  }
}

export interface Watched {
  wallMs: number;
  cpuMs: number;
  peakRssBytes: number;
  timedOut: boolean;
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

/** Runs a child to completion (or kills its group at the timeout) while polling its VmHWM and CPU time. */
export async function watch(child: ResultPromise, timeoutMs: number, onMessage?: (message: unknown) => void): Promise<Watched> {
  const started = performance.now();
  let last: ProcSample = { hwm: 0, cpuMs: 0 };
  const poll = setInterval(() => {
    const sample = child.pid === undefined ? undefined : sampleProc(child.pid);
    if (sample !== undefined) last = { hwm: Math.max(last.hwm, sample.hwm), cpuMs: Math.max(last.cpuMs, sample.cpuMs) };
  }, 20);
  // A zombie's /proc/<pid>/status has no VmHWM any more: keep the maximum of every sample (VmHWM and
  // CPU time only grow), read every 20 ms and on every IPC message.
  if (onMessage !== undefined) {
    child.on('message', (message: unknown) => {
      const sample = child.pid === undefined ? undefined : sampleProc(child.pid);
      if (sample !== undefined) last = { hwm: Math.max(last.hwm, sample.hwm), cpuMs: Math.max(last.cpuMs, sample.cpuMs) };
      onMessage(message);
    });
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, timeoutMs);
  const result = await child;
  const wallMs = performance.now() - started;
  clearTimeout(timer);
  clearInterval(poll);
  return {
    wallMs, cpuMs: last.cpuMs, peakRssBytes: last.hwm, timedOut, exitCode: result.exitCode,
    stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? ''),
  };
}
