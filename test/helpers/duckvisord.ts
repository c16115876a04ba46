// Test helpers that drive the real bins: write a config, start `bin/duckvisord.js` as a process, call
// `bin/duckvisorctl.js ... --json`, wait for conditions. Used by daemon, ctl and control tests.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../supervisor/paths.js';

export const daemonBin = path.join(projectRoot, 'bin', 'duckvisord.js');
export const ctlBin = path.join(projectRoot, 'bin', 'duckvisorctl.js');
export const fixture = (name: string) => path.join(projectRoot, 'test', 'fixtures', name);

/** A temp dir with a config file; `jobs` is YAML for the `jobs:` mapping, indented by two spaces. */
export function writeConfig(jobsYaml: string, extra = '', dir = mkdtempSync(path.join(os.tmpdir(), 'dv-'))): { dir: string; config: string; socket: string; stateDir: string } {
  const config = path.join(dir, 'duckvisor.yaml');
  writeFileSync(
    config,
    `state_dir: ./state
warehouse: ./warehouse/warehouse.duckdb
concurrency: 3
control:
  socket: ./run/dv.sock
${extra}
jobs:
${jobsYaml}
`,
  );
  return { dir, config, socket: path.join(dir, 'run', 'dv.sock'), stateDir: path.join(dir, 'state') };
}

export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs duckvisorctl with the given arguments. */
export function ctl(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CtlResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [ctlBin, ...args], { env, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs duckvisorctl --json and parses stdout; throws with stderr when it fails. */
export async function ctlJson<T = any>(config: string, ...args: string[]): Promise<T> {
  const result = await ctl(['--config', config, '--json', ...args]);
  if (result.code !== 0) throw new Error(`duckvisorctl ${args.join(' ')} exited ${result.code}: ${result.stderr}${result.stdout}`);
  return JSON.parse(result.stdout) as T;
}

export interface DaemonProcess {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit code/signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts duckvisord (not waiting for readiness). */
export function spawnDaemon(config: string, extraArgs: string[] = []): DaemonProcess {
  const child = spawn(process.execPath, [daemonBin, '--config', config, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, output: () => output, exited };
}

/** Starts duckvisord and waits until `status` answers. */
export async function startDaemon(config: string, extraArgs: string[] = []): Promise<DaemonProcess> {
  const daemon = spawnDaemon(config, extraArgs);
  let exited = false;
  void daemon.exited.then(() => (exited = true));
  await waitFor(async () => {
    if (exited) throw new Error(`duckvisord exited early:\n${daemon.output()}`);
    return (await ctl(['--config', config, 'status', '--json'])).code === 0;
  }, 20_000, 'daemon to answer status');
  return daemon;
}

/** Polls `check` until it returns a truthy value; throws after `timeoutMs` naming what was awaited. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs: number, what: string): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** Best-effort SIGKILL of a pid (teardown). */
/** Direct children of `pid` (for a daemon: the leaders of its runs, each in its own process group). */
function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch {
      // gone
    }
  }
  return children;
}

/**
 * Sends `signal` to `pid`. A SIGKILLed daemon leaves its runs alive on purpose (their output goes to
 * their log files, and a restarted daemon adopts or ends them), so with SIGKILL the process groups of
 * its direct children are killed first: a test's teardown must not leave runs behind.
 */
export function killQuietly(pid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (!pid) return;
  if (signal === 'SIGKILL') {
    for (const child of childPids(pid)) {
      try {
        process.kill(-child, 'SIGKILL');
      } catch {
        // not a group leader, or gone
      }
    }
  }
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}
