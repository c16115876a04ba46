// The environment variables of the child protocol (protocol.ts re-exports them), in a module of their
// own: the extractor child's entry reads them before it loads zod, which protocol.ts needs.
/** Environment variables the supervisor gives every child (Python client reads the same names). */
export const childEnv = {
  runId: 'DUCKVISOR_RUN_ID',
  job: 'DUCKVISOR_JOB',
  attempt: 'DUCKVISOR_ATTEMPT',
  protocol: 'DUCKVISOR_PROTOCOL',
  /** Path of this run's staging DuckDB file (shared by the attempts of one retry chain). */
  staging: 'DUCKVISOR_STAGING',
  /** The job's `options` as JSON. */
  options: 'DUCKVISOR_OPTIONS',
  /** Milliseconds; the SDK beats every third of it. */
  heartbeatTimeout: 'DUCKVISOR_HEARTBEAT_TIMEOUT_MS',
  /** Bytes; the tree RSS limit (absent when unlimited). DuckDB memory_limit and the self-check derive from it. */
  rssLimit: 'DUCKVISOR_RSS_LIMIT_BYTES',
  stateDir: 'DUCKVISOR_STATE_DIR',
  warehouse: 'DUCKVISOR_WAREHOUSE',
} as const;
