// One supervisor under test. Each driver starts its supervisor with a set of workloads configured the
// way that supervisor's users would configure it, and can ask it to stop a program.

export interface Workload {
  /** Program name inside the supervisor (letters, digits, dashes). */
  name: string;
  /** Interpreter and script, e.g. ['node', '/abs/fast-leak.mjs']. */
  argv: string[];
  env: Record<string, string>;
  /** Memory limit on the job, bytes (every peer can express an RSS limit). */
  rssLimit?: number;
  /** Swap limit, bytes (only duckvisor can express it). */
  swapLimit?: number;
  /** No-progress window, ms (only duckvisor). */
  stallTimeout?: number;
  /** IPC liveness window, ms (only duckvisor). */
  heartbeatTimeout?: number;
  heartbeat: 'ipc' | 'stdout' | 'none';
}

export interface Driver {
  readonly name: string;
  /** Version string for the results table. */
  version(): Promise<string>;
  /** Starts the supervisor running the workloads; resolves once it has launched them. */
  start(workloads: Workload[], workDir: string): Promise<void>;
  /** An operator stop of one program, through the supervisor's own CLI. */
  stop(name: string): Promise<void>;
  /** The supervisor's own processes (daemon, listeners), for overhead measurement. */
  supervisorPids(): number[];
  /**
   * Stops the supervisor and everything it runs, confirmed from /proc; returns the pids that outlived the
   * supervisor's own shutdown and had to be SIGKILLed by the harness (none, for a clean shutdown).
   */
  shutdown(): Promise<number[]>;
}
