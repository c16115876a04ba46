// Test helpers for the process layer: a JobConfig with sane defaults, a RunSpec around a fixture, an
// observer that records everything, and a /proc check that a pid is really gone.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildMessage } from '../../extractors/sdk/protocol.js';
import { DEFAULT_PROGRESS_PATTERN } from '../../supervisor/heartbeat.js';
import { projectRoot } from '../../supervisor/paths.js';
import type { JobConfig, KillReason, Progress, RunObserver, RunSpec, Sample } from '../../supervisor/types.js';

/** test/fixtures in the source tree (fixtures are not compiled). */
export const fixturesDir = path.join(projectRoot, 'test', 'fixtures');

/** Absolute path of a fixture program. */
export function fixture(name: string): string {
  return path.join(fixturesDir, name);
}

type JobOverrides = Partial<Omit<JobConfig, 'limits'>> & { limits?: JobConfig['limits'] };

/** A JobConfig with generous limits, ms durations and no retries; override what the test is about. */
export function makeJob(overrides: JobOverrides = {}): JobConfig {
  return {
    name: 'test-job',
    command: ['true'],
    options: {},
    autostart: false,
    heartbeat: 'none',
    progress_pattern: DEFAULT_PROGRESS_PATTERN,
    env: {},
    after: [],
    limits: {},
    heartbeat_timeout: 0,
    stall_timeout: 0,
    max_runtime: 0,
    stop_grace: 2000,
    sample_interval: 250,
    warn_at: 0.8,
    thrash_window: 10_000,
    retries: { max: 0, backoff: 1000, factor: 2, max_backoff: 60_000, jitter: 0, on: [] },
    ...overrides,
  };
}

/** A fresh temp dir removed when `cleanup` runs. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dv-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A RunSpec running `argv` for `job`, logging into `dir`. */
export function makeSpec(dir: string, job: JobConfig, argv: string[], extra: Partial<RunSpec> = {}): RunSpec {
  return {
    runId: `run-${Math.random().toString(36).slice(2, 10)}`,
    job,
    attempt: 1,
    argv,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir },
    cwd: dir,
    logFile: path.join(dir, 'logs', job.name, 'run.log'),
    ipc: job.heartbeat === 'ipc',
    watchPaths: [dir],
    ...extra,
  };
}

/** Everything a RunObserver was told, in order. */
export interface Recorded {
  started: Array<{ pid: number; startTime: string }>;
  samples: Sample[];
  progress: Progress[];
  messages: ChildMessage[];
  badMessages: string[];
  warnings: Array<{ kind: KillReason; measured: number; limit: number }>;
  kills: Array<{ reason: KillReason; measured: number | null; limit: number | null; detail: string }>;
  diagnostics: string[];
}

/** An observer that records every call. */
export function recordingObserver(): { observer: RunObserver; recorded: Recorded } {
  const recorded: Recorded = { started: [], samples: [], progress: [], messages: [], badMessages: [], warnings: [], kills: [], diagnostics: [] };
  const observer: RunObserver = {
    started: (pid, startTime) => recorded.started.push({ pid, startTime }),
    sample: (sample) => recorded.samples.push(sample),
    progress: (progress) => recorded.progress.push(progress),
    message: (message) => recorded.messages.push(message),
    badMessage: (error) => recorded.badMessages.push(error),
    warning: (kind, measured, limit) => recorded.warnings.push({ kind, measured, limit }),
    killing: (reason, measured, limit, detail) => recorded.kills.push({ reason, measured, limit, detail }),
    diagnostics: (text) => recorded.diagnostics.push(text),
  };
  return { observer, recorded };
}

/** The process state letter from /proc/<pid>/stat, or null when the pid does not exist. */
export function procState(pid: number): string | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[0] ?? null;
  } catch {
    return null;
  }
}

/** True when /proc shows the pid running (not a zombie). */
export function runningInProc(pid: number): boolean {
  const state = procState(pid);
  return state !== null && state !== 'Z' && state !== 'X';
}

/** SIGKILLs pids that are still running (test teardown safety net). */
export function killIfRunning(pids: Iterable<number>): void {
  for (const pid of pids) {
    if (runningInProc(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

/** Pids printed as "pid <n>" or "grandchild <n>" lines in a log file. */
export function pidsInLog(logFile: string): number[] {
  let text = '';
  try {
    text = readFileSync(logFile, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/^(?:pid|grandchild) (\d+)$/gm)].map((match) => Number(match[1]));
}
