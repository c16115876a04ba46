// Optional per-run cgroups (cgroup v2): a kernel-enforced backstop (memory.max, memory.swap.max) behind the
// sampler's limits, and `cgroup.kill`, which kills every process of a run, even ones that left its process
// group with setsid. Used only where a writable (delegated) cgroup v2 subtree exists; elsewhere the daemon
// says why at start and relies on process groups.
//
// How the daemon uses it (call sites):
//   const cgroups = detectCgroupV2();                      // at start
//   const ready = cgroups.available || cgroups.kill ? prepareCgroupSubtree(cgroups) : cgroups;
//   log.info(ready.reason)                                 // "cgroup v2 not available: …" or "per-run cgroups under …"
//   // per run, when ready.available (memory limits + kill) or ready.kill (kill and tracking only):
//   const group = RunCgroup.create(ready, runId, { memoryMax: job.limits.rss, swapMax: job.limits.swap });
//   spec.argv = [...group.launchPrefix(), ...spec.argv];    // the child joins the cgroup before exec
//   //   (or, after spawning: group.addPid(pid) — racy for children forked before the move)
//   group.kill();                                          // final step of the stop sequence, after SIGKILL of the group
//   await group.remove();                                  // when the run has ended
//   group.oomKills()                                       // > 0: the kernel backstop fired (record it as reason memory)
import fs from 'node:fs';
import path from 'node:path';

/** What the host offers. `available` = memory limits AND kill; `kill` alone still gives tree tracking. */
export interface CgroupSupport {
  /** Per-run memory.max + cgroup.kill usable (after prepareCgroupSubtree). */
  available: boolean;
  /** One line for the log: what is available, or "cgroup v2 not available: …" and why. */
  reason: string;
  /** cgroup2 mount point, when one is mounted. */
  mount: string | null;
  /** Our own cgroup directory in that hierarchy (where the run cgroups go, below `duckvisor-runs/`). */
  base: string | null;
  /** The memory controller can be used below base. */
  memory: boolean;
  /** cgroup.kill exists (Linux ≥ 5.14); otherwise kill() signals each pid. */
  kill: boolean;
  /** base is writable by us (delegated to our user, or we are root). */
  writable: boolean;
}

export interface CgroupProbeOptions {
  /** Defaults to /proc/self/mounts. */
  mountsFile?: string;
  /** Defaults to /proc/self/cgroup. */
  cgroupFile?: string;
  /** Use this directory instead of our own cgroup (e.g. a subtree delegated to the daemon's user). */
  base?: string;
}

/** The folder below base that holds one cgroup per run. */
export const runsFolder = 'duckvisor-runs';

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function words(file: string): string[] {
  return (readText(file) ?? '').split(/\s+/).filter(Boolean);
}

/** Why: tells the daemon, and the operator, whether per-run cgroups can work here, and exactly why not. */
export function detectCgroupV2(options: CgroupProbeOptions = {}): CgroupSupport {
  const unavailable = (why: string, extra: Partial<CgroupSupport> = {}): CgroupSupport => ({
    available: false,
    reason: `cgroup v2 not available: ${why}`,
    mount: null,
    base: null,
    memory: false,
    kill: false,
    writable: false,
    ...extra,
  });
  const mountsFile = options.mountsFile ?? '/proc/self/mounts';
  const mounts = readText(mountsFile);
  if (mounts === null) return unavailable(`cannot read ${mountsFile}`);
  const entries = mounts
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields.length >= 3);
  const v2 = entries.find((fields) => fields[2] === 'cgroup2');
  const v1 = entries.filter((fields) => fields[2] === 'cgroup').map((fields) => fields[1]!);
  if (!v2) return unavailable(`no cgroup2 filesystem is mounted${v1.length ? ` (cgroup v1 only: ${v1.join(', ')})` : ''}`);
  const mount = v2[1]!.replace(/\\040/g, ' ');

  let base = options.base;
  if (!base) {
    const cgroupFile = options.cgroupFile ?? '/proc/self/cgroup';
    const own = (readText(cgroupFile) ?? '').split('\n').find((line) => line.startsWith('0::'));
    if (!own) return unavailable(`${cgroupFile} has no cgroup v2 entry ("0::/…")`, { mount });
    base = path.join(mount, own.slice(3).trim()).replace(/(.)\/+$/, '$1');
  }
  if (!fs.existsSync(path.join(base, 'cgroup.controllers'))) return unavailable(`${base} is not a cgroup v2 directory`, { mount, base });

  const writable = isWritable(base);
  // The root cgroup has no cgroup.kill; its children do (Linux >= 5.14): look at one, prepare() re-checks.
  const kill = fs.existsSync(path.join(base, 'cgroup.kill')) || (path.resolve(base) === path.resolve(mount) && childHasKillFile(base));
  const controllers = words(path.join(base, 'cgroup.controllers'));
  const memory = controllers.includes('memory');
  const found = { mount, base, kill, writable, memory };
  if (!memory) {
    const v1Memory = v1.find((where) => /(^|[/,])memory$/.test(where) || where.endsWith('/memory'));
    const hybrid = v1.length > 0 ? `cgroup v1/hybrid hierarchy, the memory controller is on cgroup v1${v1Memory ? ` (${v1Memory})` : ''}; ` : '';
    return unavailable(`${hybrid}no memory controller in ${path.join(base, 'cgroup.controllers')} (controllers: ${controllers.join(' ') || 'none'})`, found);
  }
  if (!writable) {
    return unavailable(`${base} is not writable by this user (run under systemd with Delegate=yes, or set a delegated base)`, found);
  }
  return {
    available: true,
    reason: `cgroup v2 available: per-run cgroups under ${path.join(base, runsFolder)} (memory.max${kill ? ', cgroup.kill' : ', kill by pid: no cgroup.kill'})`,
    ...found,
  };
}

function childHasKillFile(dir: string): boolean {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).some((entry) => entry.isDirectory() && fs.existsSync(path.join(dir, entry.name, 'cgroup.kill')));
  } catch {
    return false;
  }
}

function isWritable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    fs.accessSync(path.join(dir, 'cgroup.procs'), fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes the subtree usable: creates `<base>/duckvisor-runs` and, when the memory controller is wanted but not
 * yet enabled for children, moves the processes of base into a `<base>/daemon` leaf (cgroup v2's "no internal
 * processes" rule) and writes +memory to the subtree_control files. Returns the support to use from now on;
 * on any failure it returns `available: false` with the reason. Call once, at start, before any run.
 */
export function prepareCgroupSubtree(support: CgroupSupport): CgroupSupport {
  if (!support.base || !support.writable) return { ...support, available: false };
  const runs = path.join(support.base, runsFolder);
  try {
    if (support.memory) {
      const control = path.join(support.base, 'cgroup.subtree_control');
      if (!words(control).includes('memory')) {
        const pids = words(path.join(support.base, 'cgroup.procs'));
        if (pids.length > 0 && path.resolve(support.base) !== path.resolve(support.mount ?? '')) {
          const leaf = path.join(support.base, 'daemon');
          fs.mkdirSync(leaf, { recursive: true });
          for (const pid of pids) writeQuietly(path.join(leaf, 'cgroup.procs'), pid);
        }
        fs.writeFileSync(control, '+memory');
      }
    }
    fs.mkdirSync(runs, { recursive: true });
    if (support.memory) {
      const runsControl = path.join(runs, 'cgroup.subtree_control');
      if (!words(runsControl).includes('memory')) fs.writeFileSync(runsControl, '+memory');
    }
  } catch (error) {
    return { ...support, available: false, reason: `cgroup v2 not available: cannot prepare ${runs}: ${(error as Error).message}` };
  }
  return { ...support, kill: fs.existsSync(path.join(runs, 'cgroup.kill')) };
}

function writeQuietly(file: string, text: string): void {
  try {
    fs.writeFileSync(file, text);
  } catch {
    // A process that exited meanwhile cannot be moved; nothing to do.
  }
}

export interface RunCgroupLimits {
  /** memory.max in bytes (the job's rss limit; the kernel counts page cache too, so keep headroom). */
  memoryMax?: number;
  /** memory.swap.max in bytes. */
  swapMax?: number;
}

/** Why: one run's cgroup, so the kernel can cap it and kill all of it, escaped descendants included. */
export class RunCgroup {
  /** Limits that were written (a missing controller or file leaves them out). */
  readonly applied: { memoryMax?: number; swapMax?: number } = {};

  private constructor(
    readonly path: string,
    readonly hasKillFile: boolean,
  ) {}

  /** Creates `<base>/duckvisor-runs/<runId>` and writes the limits the host supports. */
  static create(support: CgroupSupport, runId: string, limits: RunCgroupLimits = {}): RunCgroup {
    if (!support.base || !support.writable) throw new Error(support.reason);
    if (!/^[A-Za-z0-9_.-]+$/.test(runId) || runId.startsWith('.')) throw new Error(`run id "${runId}" cannot name a cgroup (letters, digits, _ . - only)`);
    const dir = path.join(support.base, runsFolder, runId);
    fs.mkdirSync(dir, { recursive: true });
    const group = new RunCgroup(dir, fs.existsSync(path.join(dir, 'cgroup.kill')));
    if (limits.memoryMax !== undefined && fs.existsSync(path.join(dir, 'memory.max'))) {
      fs.writeFileSync(path.join(dir, 'memory.max'), String(Math.floor(limits.memoryMax)));
      group.applied.memoryMax = limits.memoryMax;
    }
    if (limits.swapMax !== undefined && fs.existsSync(path.join(dir, 'memory.swap.max'))) {
      fs.writeFileSync(path.join(dir, 'memory.swap.max'), String(Math.floor(limits.swapMax)));
      group.applied.swapMax = limits.swapMax;
    }
    return group;
  }

  /**
   * argv prefix that makes the child join this cgroup before it execs the real program, so everything it
   * forks is inside from the first instruction. The script is constant; paths and argv are passed as
   * positional parameters, never interpolated, so no argument is ever parsed by the shell.
   */
  launchPrefix(): string[] {
    return ['/bin/sh', '-c', 'echo $$ > "$0" && exec "$@"', path.join(this.path, 'cgroup.procs')];
  }

  /** Moves a running process in (its already-forked children stay where they are). */
  addPid(pid: number): void {
    fs.writeFileSync(path.join(this.path, 'cgroup.procs'), String(pid));
  }

  /** Every process in the run's cgroup now. */
  pids(): number[] {
    return words(path.join(this.path, 'cgroup.procs')).map(Number);
  }

  /** Bytes in use now (memory.current), when the memory controller is enabled. */
  memoryCurrent(): number | null {
    const text = readText(path.join(this.path, 'memory.current'));
    return text === null ? null : Number(text.trim());
  }

  /** How often the kernel OOM-killed inside this cgroup (memory.events oom_kill). */
  oomKills(): number {
    const match = /^oom_kill (\d+)$/m.exec(readText(path.join(this.path, 'memory.events')) ?? '');
    return match ? Number(match[1]) : 0;
  }

  /** SIGKILLs every process of the run: cgroup.kill when present, else each listed pid (repeated, as they may fork). */
  kill(): void {
    if (this.hasKillFile) {
      try {
        fs.writeFileSync(path.join(this.path, 'cgroup.kill'), '1');
      } catch (error) {
        // Already removed: nothing left to kill.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      return;
    }
    for (let round = 0; round < 5; round++) {
      const pids = this.pids();
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
    }
  }

  /** Waits (up to `ms`) until the cgroup is empty, then removes it. Throws when it stays populated. */
  async remove(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      try {
        fs.rmdirSync(this.path);
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY' || Date.now() > deadline) {
          throw new Error(`cannot remove cgroup ${this.path}: ${code === 'EBUSY' ? `still populated by ${this.pids().join(', ') || 'exiting processes'}` : (error as Error).message}`);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
