// DuckDB settings derived from the job's limits, and the extractor's own memory self-check.
// DuckDB's default memory_limit is ~80% of the machine's RAM, far above any job's RSS limit, so
// left alone it would drive the child straight into the supervisor's kill. We give DuckDB about
// half of the job's RSS limit (the rest is for Node's heap and buffers), at most 16 MiB for an
// extractor's staging database (see STAGING_WRITER_MEMORY_BYTES), and spill to a temp directory
// next to the staging file.
import { appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { formatBytes } from '../../supervisor/units.js';

/** Share of the job's RSS limit given to DuckDB's buffer manager. */
export const DUCKDB_MEMORY_SHARE = 0.5;
/** Share of the job's RSS limit at which the extractor fails itself, before the supervisor kills it. */
export const SELF_CHECK_SHARE = 0.9;
/** Default DuckDB worker threads per extractor: the machine is shared with other jobs. */
export const DEFAULT_THREADS = 2;
/** DuckDB needs a few tens of MB to work at all; a lower memory_limit only produces confusing errors. */
const MIN_DUCKDB_MEMORY_BYTES = 32 * 1024 * 1024;
/**
 * memory_limit of an extractor's staging database unless the job sets `duckdb_memory`. The staging
 * database only appends, commits and checkpoints; a larger budget is spent on caching the blocks it
 * already wrote (DuckDB keeps them loaded after each checkpoint until the limit forces eviction), so
 * RSS would grow with the table. Rows of a large unit beyond it spill to the temp directory.
 *
 * 16 MiB, below the MIN_DUCKDB_MEMORY_BYTES floor of other DuckDB processes: committed rows wait in
 * in-memory row groups until a checkpoint (every 16 MiB of WAL), which a small store never reaches
 * (mlflow-metric-history on the 546-run seed store ends with 17 MiB of them) but a larger one fills to
 * the limit before every checkpoint, and the checkpoint then works at the limit too. Capping it at the
 * small store's level keeps the peak flat: bench/extract metric-history 10× peak RSS 166 → 155 MiB (file
 * store) and 165 → 155 MiB (SQLite store), 1× unchanged (141/144 MiB; the last rows of a 1× run spill to
 * the temp directory instead). 8 MiB is too little: checkpoints fail with "failed to pin block".
 */
export const STAGING_WRITER_MEMORY_BYTES = 16 * 1024 * 1024;
/**
 * The staging database of an extractor that declares `staging: 'small'` (narrow tables, tens of rows
 * per unit: mlflow-runs). DuckDB gives every column of a table whole blocks (an in-memory segment, a
 * checkpoint's pinned buffers): with 256 KiB blocks the seven mlflow-runs tables needed ~10 MiB of
 * buffers whatever their size, and 16 MiB filled on a large store while a small one never got there.
 * 16 KiB blocks (default_block_size of a new file; an existing file keeps its own, and the warehouse
 * attaches either) let an 8 MiB limit hold: mlflow-runs on the 10× SQLite store peaked at 130 MiB
 * before, 123 MiB now, the 1× stores unchanged (107-111 MiB). A bulk writer must not use it: the
 * 10× metric-history spilled and re-read its rows, 2.7× the CPU time.
 *
 * The last three fields keep what the database has committed on disk instead of in memory. Left to DuckDB,
 * committed rows stay in in-memory row groups until the WAL reaches 16 MiB, and the blocks of every
 * checkpoint stay cached until memory_limit forces them out; both grew with the run: mlflow-runs on the 10×
 * SQLite store ended with 6 MiB of in-memory rows and 8 MiB in DuckDB's buffers (duckdb_memory()), the 1× store
 * with 2.6 MiB. With all three, DuckDB's memory during mlflow-runs stays at or below 4 MiB on the 10× and 30×
 * SQLite stores (1.5 MiB at the end of the 1× store; without the eviction 4.6-5.0 MiB at the end of the 10× and
 * 5.6-6.9 MiB of the 30× store); peak RSS of the whole extractor in bench/extract (medians of 3) 109, 116 and
 * 120 MiB on the 1×, 10× and 30× SQLite stores (without the eviction: 10× 121-124, 30× 130-131 MiB with
 * `/usr/bin/time`), CPU time within noise.
 */
export const SMALL_STAGING = {
  memoryBytes: 8 * 1024 * 1024,
  blockSizeBytes: 16 * 1024,
  /** WAL size that triggers a checkpoint: every few commits. */
  checkpointThresholdBytes: 256 * 1024,
  /**
   * Rows per row group (the file is attached with ROW_GROUP_SIZE), so a checkpoint rewrites only the last,
   * partly filled row group of each table: DuckDB rewrites a row group that gained rows whole, and its default
   * of 122,880 rows made every checkpoint of a growing table rewrite all of it (peaks of +5-9 MiB that rose
   * with the table). 2,048 is the smallest DuckDB accepts.
   */
  rowGroupRows: 2048,
  /**
   * Blocks DuckDB may keep cached (written by checkpoints, tag BASE_TABLE) before they are evicted after a group
   * commit (context.ts afterCommit). Left alone they fill memory_limit as the tables grow: 0.7 MiB at the end of
   * mlflow-runs on the 1× store, 3.6-3.9 MiB on the 10× and 4.7-6 MiB on the 30× store.
   */
  evictCacheAboveBytes: 2 * 1024 * 1024,
} as const;
/**
 * DuckDB compression methods a staging database does not use. FSST's analysis of a string column at a
 * checkpoint holds several MiB of symbol tables and samples outside DuckDB's memory_limit, and a staging
 * file checkpoints every 16 MiB of WAL: mlflow-metric-history on the 10× SQLite store peaked at 136 MiB
 * with it and 129-131 MiB without (the 1× store, whose one checkpoint is uncompressed, at 126-129 MiB),
 * in the same time, with files no larger (dictionary and the other methods still apply). The warehouse
 * compresses what it stores in its own way; the publisher does not use this. Set by StagingSession.open.
 */
export const STAGING_DISABLED_COMPRESSION = 'fsst';
/**
 * Configuration of the jemalloc bundled in libduckdb (read once, when the library first allocates,
 * from DUCKDB_JE_MALLOC_CONF). DuckDB's default keeps freed pages for about a second; a writer that
 * checkpoints every ~16 MiB of WAL then carries the previous checkpoint's freed buffers as RSS.
 */
export const DUCKDB_ALLOCATOR_CONF = 'dirty_decay_ms:0,muzzy_decay_ms:0';

/**
 * Also `--optimize-for-size` (read by V8's heap controller at each full GC, so it works when set at runtime):
 * the old generation's next GC limit grows by a conservative factor over the live data instead of up to
 * 2-4×, so promoted garbage no longer piles up with the run's length. bench/extract, mlflow-runs on the
 * file store: peak RSS 1× 135 → 117-122 MiB, 10× 165-181 → 143-147 MiB, CPU time unchanged within noise.
 * `DUCKVISOR_V8_OPTIMIZE_FOR_SIZE=0` keeps V8's default.
 *
 * V8 doubles the young generation (new space) whenever enough objects survive scavenges, up to 3 × 16 MiB
 * in Node 20; a long extraction allocates steadily, so the heap grew from ~30 to ~48 MiB with the run's
 * length though the live data stayed ~15-25 MiB. The growth factor is read at each resize, so setting it
 * at runtime keeps the young generation at its initial size (more, shorter scavenges; same throughput
 * within noise in bench/extract). `DUCKVISOR_YOUNG_GENERATION=grow` keeps V8's default.
 */
export function keepYoungGenerationSmall(env: NodeJS.ProcessEnv = process.env): void {
  if (env['DUCKVISOR_YOUNG_GENERATION'] !== 'grow') v8.setFlagsFromString('--semi-space-growth-factor=1');
  if (env['DUCKVISOR_V8_OPTIMIZE_FOR_SIZE'] !== '0') v8.setFlagsFromString('--optimize-for-size');
}

/** Old-generation growth (bytes of V8 heap in use above the last trimmed level) that triggers a full GC. */
export const HEAP_TRIM_GROWTH_BYTES = 4 * 1024 * 1024;
const HEAP_TRIM_INTERVAL_MS = 250;

/**
 * Even with --optimize-for-size, V8 lets promoted garbage accumulate until the old generation reaches
 * a limit that it raises during a long run: mlflow-metric-history's V8 heap was 21 MiB at 1× and 35-38 MiB
 * at 10× with ~14-17 MiB live. A full GC whenever the heap in use has grown HEAP_TRIM_GROWTH_BYTES since the
 * last one keeps it near the 1× level (heap total 20-27 MiB at 10×; bench/extract mlflow-runs, file store 10×:
 * peak RSS 149 → 139 MiB; metric-history within noise; a full GC of ~15 MiB live takes a few ms). gc() is
 * obtained through --expose-gc at runtime. 4 MiB rather than 8: ~1-2 MiB less at the peak of a 10× mlflow-runs or
 * a 1× metric-history run, CPU time the same within noise.
 * `DUCKVISOR_HEAP_TRIM=0` turns it off.
 */
export function startHeapTrim(env: NodeJS.ProcessEnv = process.env): { stop(): void } {
  if (env['DUCKVISOR_HEAP_TRIM'] === '0') return { stop: () => undefined };
  v8.setFlagsFromString('--expose-gc');
  const collect = runInNewContext('gc') as (() => void) | undefined;
  if (typeof collect !== 'function') return { stop: () => undefined };
  let trimmedAt = v8.getHeapStatistics().used_heap_size;
  const timer = setInterval(() => {
    if (v8.getHeapStatistics().used_heap_size - trimmedAt < HEAP_TRIM_GROWTH_BYTES) return;
    collect();
    trimmedAt = v8.getHeapStatistics().used_heap_size;
  }, HEAP_TRIM_INTERVAL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

export interface DuckDBLimitsInput {
  /** The job's tree RSS limit in bytes; undefined = unlimited. */
  rssLimitBytes: number | undefined;
  /** Requested DuckDB threads (job option `threads`); default DEFAULT_THREADS. */
  threads?: number | undefined;
  /** Path of the database file; the temp directory goes next to it. */
  databasePath: string;
  /** Explicit DuckDB memory_limit in bytes (job option `duckdb_memory`); overrides the derived one. */
  memoryLimitBytes?: number | undefined;
  /** Upper bound of the derived memory_limit (e.g. STAGING_WRITER_MEMORY_BYTES); ignored when memoryLimitBytes is set. */
  memoryCapBytes?: number | undefined;
  /** Block size of a database file created by this instance (SMALL_STAGING.blockSizeBytes); DuckDB's default when unset. */
  blockSizeBytes?: number | undefined;
  /** WAL size that triggers a checkpoint (SMALL_STAGING.checkpointThresholdBytes); DuckDB's 16 MiB when unset. */
  checkpointThresholdBytes?: number | undefined;
}

// Why: one place decides DuckDB's memory_limit/threads/temp_directory for every SDK process (extractor and publisher).
export function duckdbSettings(input: DuckDBLimitsInput): Record<string, string> {
  const threads = input.threads ?? DEFAULT_THREADS;
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new Error(`option 'threads' must be an integer between 1 and 256 (got ${JSON.stringify(input.threads)})`);
  }
  const settings: Record<string, string> = {
    threads: String(threads),
    temp_directory: temporaryDirectoryFor(input.databasePath),
  };
  if (input.blockSizeBytes !== undefined) settings['default_block_size'] = String(input.blockSizeBytes);
  if (input.checkpointThresholdBytes !== undefined) settings['checkpoint_threshold'] = `${Math.floor(input.checkpointThresholdBytes / 1024)}KiB`;
  if (input.memoryLimitBytes !== undefined) {
    settings['memory_limit'] = `${Math.floor(Math.max(MIN_DUCKDB_MEMORY_BYTES, input.memoryLimitBytes) / 1024)}KiB`;
  } else if (input.rssLimitBytes !== undefined || input.memoryCapBytes !== undefined) {
    const share = input.rssLimitBytes === undefined ? Infinity : Math.floor(input.rssLimitBytes * DUCKDB_MEMORY_SHARE);
    // An explicit cap (the staging writer's) may sit below the general floor; see STAGING_WRITER_MEMORY_BYTES.
    const floor = Math.min(MIN_DUCKDB_MEMORY_BYTES, input.memoryCapBytes ?? Infinity);
    const bytes = Math.max(floor, Math.min(share, input.memoryCapBytes ?? Infinity));
    settings['memory_limit'] = `${Math.floor(bytes / 1024)}KiB`;
  }
  return settings;
}

// Why: the publisher removes the spill directory together with the staging file it belongs to.
export function temporaryDirectoryFor(databasePath: string): string {
  return path.join(path.dirname(databasePath), `${path.basename(databasePath)}.tmp`);
}

// Why: parse DUCKVISOR_RSS_LIMIT_BYTES once, with an error that names the variable.
export function parseRssLimit(raw: string | undefined): number | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`DUCKVISOR_RSS_LIMIT_BYTES must be a positive number of bytes (got ${JSON.stringify(raw)})`);
  }
  return Math.floor(value);
}

export interface MemoryReading {
  rss: number;
  duckdb: number;
}

// Why: the message the operator sees when the extractor stops itself; it says what to change.
export function memoryExceededMessage(reading: MemoryReading, rssLimitBytes: number): string {
  const used = memoryInUse(reading);
  return (
    `extractor memory ${formatBytes(used)} exceeds ${Math.round(SELF_CHECK_SHARE * 100)}% of the job's rss limit ` +
    `${formatBytes(rssLimitBytes)} (process rss ${formatBytes(reading.rss)}, of which DuckDB reports ${formatBytes(reading.duckdb)}); ` +
    `lower batch_rows or raise limits.rss`
  );
}

/**
 * DuckDB's buffer pool lives inside this process, so RSS already contains it; adding the two would count
 * it twice. DuckDB's figure matters when it has reserved memory that is not resident yet, so take the
 * larger of RSS and (JS heap + native buffers + DuckDB).
 */
export function memoryInUse(reading: MemoryReading, heapAndExternal = 0): number {
  return Math.max(reading.rss, heapAndExternal + reading.duckdb);
}

export interface MemorySelfCheck {
  stop(): void;
  /** Runs one check now (also run every interval). */
  checkNow(): Promise<void>;
}

export interface MemorySelfCheckInput {
  rssLimitBytes: number;
  /** Bytes DuckDB says it holds (e.g. sum of duckdb_memory()); may reject, then 0 is used. */
  duckdbMemory: () => Promise<number>;
  /** Called once, with the error to fail the run with. */
  onExceeded: (error: Error) => void;
  intervalMs?: number;
}

// Why: fail fast with a message that names the fix, before the supervisor has to SIGKILL the tree.
export function startMemorySelfCheck(input: MemorySelfCheckInput): MemorySelfCheck {
  const threshold = input.rssLimitBytes * SELF_CHECK_SHARE;
  let fired = false;
  let running = false;
  const checkNow = async (): Promise<void> => {
    if (fired || running) return;
    running = true;
    try {
      let duckdb = 0;
      try {
        duckdb = await input.duckdbMemory();
      } catch {
        duckdb = 0;
      }
      const usage = process.memoryUsage();
      const reading = { rss: usage.rss, duckdb };
      if (!fired && memoryInUse(reading, usage.heapUsed + usage.external) > threshold) {
        fired = true;
        input.onExceeded(new Error(memoryExceededMessage(reading, input.rssLimitBytes)));
      }
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void checkNow(), input.intervalMs ?? 1000);
  timer.unref();
  return { stop: () => clearInterval(timer), checkNow };
}

/** Debug: `DUCKVISOR_MEMORY_TRACE=<file>` appends one line of memory figures every MEMORY_TRACE_INTERVAL_MS. */
export const MEMORY_TRACE_ENV = 'DUCKVISOR_MEMORY_TRACE';
/** `DUCKVISOR_MEMORY_TRACE_MS` shortens it (a checkpoint's transient lasts only tens of ms). */
const MEMORY_TRACE_INTERVAL_MS = Number(process.env['DUCKVISOR_MEMORY_TRACE_MS']) || 200;

// Why: to see what grows with a run's length (RSS vs V8 heap vs DuckDB's buffers) without a profiler.
export function startMemoryTrace(file: string | undefined, duckdbMemory: () => Promise<number>, duckdbTags: () => Promise<string> = async () => ''): MemoryTrace {
  if (file === undefined || file === '') return { mark: async () => undefined, stop: () => undefined };
  const startedAt = performance.now();
  const mib = (bytes: number): string => (bytes / 1048576).toFixed(1);
  const sample = async (label = 'tick'): Promise<void> => {
    const duckdb = await duckdbMemory().catch(() => 0);
    const tags = await duckdbTags().catch(() => '');
    const usage = process.memoryUsage();
    const peak = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    const line = `${Math.round(performance.now() - startedAt)} ms ${label} rss ${mib(usage.rss)} peak ${peak === undefined ? '?' : mib(Number(peak) * 1024)} heap_total ${mib(usage.heapTotal)} heap_used ${mib(usage.heapUsed)} external ${mib(usage.external)} duckdb ${mib(duckdb)}${tags === '' ? '' : ` (${tags})`}\n`;
    appendFileSync(file, line);
  };
  const timer = setInterval(() => void sample(), MEMORY_TRACE_INTERVAL_MS);
  timer.unref();
  return {
    mark: (label) => sample(label),
    stop: () => clearInterval(timer),
  };
}

export interface MemoryTrace {
  /** Writes one line now, labelled (a phase of the run). */
  mark(label: string): Promise<void>;
  stop(): void;
}
