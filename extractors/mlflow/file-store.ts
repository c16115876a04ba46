// Reader for MLflow's file store (`mlruns/`): experiments are digit-named folders (deleted ones under
// .trash/), runs are 32-hex folders with meta.yaml, and every param/tag/metric key is a file whose
// path is the key (so `val/loss` is metrics/val/loss). Files are read one run at a time; metric files
// are streamed line by line. Artifact URIs are absolute at write time, so a moved or copied store is
// read from <run dir>/artifacts when the recorded path does not exist.
//
// Speed: a run is dozens of tiny files, so they are read with synchronous calls (the extractor child
// does nothing else meanwhile; a promise per file through libuv's thread pool cost more than the
// reads), and the meta.yaml files MLflow writes — flat `key: value` lines — are parsed directly, with
// the full YAML parser (meta-yaml.ts) as the fallback for anything else. Metric files up to
// WHOLE_FILE_BYTES are read in one call; larger ones are streamed.
import { closeSync, createReadStream, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, type Dirent } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseRunFilter, type FilterDataKind } from './filter.js';
import { isDirectory, LocalArtifacts, localPathOf, sortedEntries as entries } from './local-files.js';
import { metaInteger, metaString, readMetaYaml, type Meta } from './meta-yaml.js';
import { parseMetricLine, parseMetricValue } from './metric-line.js';
import {
  isLaterMetric,
  MlflowDataError,
  RUN_STATUS_BY_NUMBER,
  type DatasetInput,
  type Experiment,
  type KeyValue,
  type MetricPoint,
  type MlflowReader,
  type RunData,
  type RunInfo,
  type RunListing,
  type RunQuery,
} from './types.js';

const RESERVED_EXPERIMENT_FOLDERS = new Set(['tags', 'datasets', 'traces', 'models', '.trash']);
const RUN_ID = /^[0-9a-f]{32}$/;
const DIGITS = /^\d+$/;
/** Points per yielded metric batch. */
const HISTORY_BATCH = 10_000;
/** Metric files up to this size are read in one call; larger ones are streamed in batches. */
const WHOLE_FILE_BYTES = 4 * 1024 * 1024;
const LINE_BREAK = /\r?\n|\r/;

export interface ReaderOptions {
  /** Called for things MLflow itself would skip with a warning (stray folders, mismatched ids). */
  onWarning?: (message: string) => void;
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? String(error);
}

/** One options object for every small read: readFileSync(file, 'utf8') builds one per call (~7 µs of a ~20 µs read). */
const UTF8 = { encoding: 'utf8' } as const;
const LIST_WITH_TYPES = { withFileTypes: true } as const;

function readValueFile(file: string, runId: string | undefined): string {
  try {
    return readFileSync(file, UTF8);
  } catch (error) {
    throw new MlflowDataError(runId, file, `unreadable file (${errorCode(error)})`);
  }
}

/** Directory entries sorted by name; a missing directory is empty (as local-files.ts sortedEntries). */
function sortedEntriesSync(dir: string): Dirent[] {
  try {
    return readdirSync(dir, LIST_WITH_TYPES).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** Files under `dir`, recursively, as [POSIX relative path, absolute path] (as local-files.ts walkFiles, synchronously). */
function walkFilesSync(dir: string, runId: string | undefined, out: [string, string][] = [], prefix = ''): [string, string][] {
  let list: Dirent[];
  try {
    list = sortedEntriesSync(dir);
  } catch (error) {
    throw new MlflowDataError(runId, dir, `cannot list directory (${errorCode(error)})`);
  }
  for (const entry of list) {
    // `dir` is normalized (path.join/resolve) and an entry name has no separator: no path.join per file.
    const full = `${dir}${path.sep}${entry.name}`;
    const key = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    let directory = entry.isDirectory();
    if (entry.isSymbolicLink()) {
      try {
        directory = statSync(full).isDirectory();
      } catch (error) {
        throw new MlflowDataError(runId, full, `unreadable file (${errorCode(error)}: broken symlink?)`);
      }
    }
    if (directory) walkFilesSync(full, runId, out, key);
    else out.push([key, full]);
  }
  return out;
}

function readKeyValues(dir: string, runId: string | undefined): KeyValue[] {
  return walkFilesSync(dir, runId).map(([key, file]) => ({ key, value: readValueFile(file, runId) }));
}

/** Starts of plain YAML scalars this parser leaves to the full parser (indicators, quotes other than '…', flow collections). */
const PLAIN_UNSAFE_START = /^[-?:,[\]{}#&*!|>"%@`]/;
const META_LINE = /^([A-Za-z_][A-Za-z0-9_.]*):(?: (.*))?$/;
const NULL_WORDS = new Set(['', '~', 'null', 'Null', 'NULL']);

/**
 * Why: MLflow writes meta.yaml as flat `key: value` lines; parsing those directly is ~20× cheaper than
 * a YAML document. Returns undefined for anything else (nesting, comments, double quotes, multi-line
 * values, CR line ends…), which then goes to the full failsafe parser, whose result this equals.
 */
export function parseFlatMeta(text: string): Meta | undefined {
  if (text.includes('\r') || text.includes('\t')) return undefined;
  const meta: Meta = {};
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) return undefined;
  for (const line of lines) {
    const match = META_LINE.exec(line);
    if (match === null) return undefined;
    const key = match[1]!;
    // YAML drops the spaces around a plain scalar and after a quoted one.
    const value = (match[2] ?? '').trim();
    if (value === '') {
      // `key:` alone could open a nested block on the next lines: leave it to the full parser.
      return undefined;
    }
    if (value.startsWith("'")) {
      if (!/^'(?:[^']|'')*'$/.test(value)) return undefined;
      meta[key] = value.slice(1, -1).replace(/''/g, "'");
    } else if (value === '[]') {
      meta[key] = [];
    } else if (value === '{}') {
      meta[key] = {};
    } else {
      if (PLAIN_UNSAFE_START.test(value) && !/^-\d/.test(value)) return undefined;
      if (value.includes(': ') || value.includes(' #') || value.endsWith(':')) return undefined;
      meta[key] = NULL_WORDS.has(value) ? null : value;
    }
  }
  return meta;
}

/** meta.yaml through the flat fast path, else (and for every error) through readMetaYaml. */
async function readMeta(file: string, runId: string | undefined): Promise<Meta> {
  let text: string;
  try {
    text = readFileSync(file, UTF8);
  } catch {
    return readMetaYaml(file, runId);
  }
  return parseFlatMeta(text) ?? readMetaYaml(file, runId);
}

/** Parses metric lines; a bad line is an error naming the file and the line number (counted as readline counts). */
function parseMetricText(text: string, file: string, key: string, runId: string, firstLine = 1): MetricPoint[] {
  const points: MetricPoint[] = [];
  const lines = text.split(LINE_BREAK);
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (line.trim() === '') continue;
    const parsed = parseMetricLine(key, line);
    if (typeof parsed === 'string') throw new MlflowDataError(runId, file, `line ${firstLine + index}: ${parsed}`);
    points.push(parsed);
  }
  return points;
}

/** A plain decimal metric value (what Python's repr(float) writes), matched in place at lastIndex (metric-line.ts NUMBER). */
const PLAIN_VALUE = /[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/y;
/** Integers of up to this many digits are exact when accumulated digit by digit (below 2^53). */
const EXACT_DIGITS = 15;

/**
 * The integer written at text[start, end) ("-?digits"), or undefined when it is not one. Equals
 * Number(text.slice(start, end)) for every accepted text, without cutting the slice out.
 */
function integerAt(text: string, start: number, end: number): number | undefined {
  let index = start;
  const negative = text.charCodeAt(index) === 45; // '-'
  if (negative) index++;
  if (index >= end) return undefined;
  if (end - index > EXACT_DIGITS) return /^-?\d+$/.test(text.slice(start, end)) ? Number(text.slice(start, end)) : undefined;
  let value = 0;
  for (; index < end; index++) {
    const digit = text.charCodeAt(index) - 48;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  return negative ? -value : value;
}

/** True when text[start, end) is a metric value parseMetricValue accepts; the common decimal form is checked in place. */
function isMetricValueAt(text: string, start: number, end: number): boolean {
  PLAIN_VALUE.lastIndex = start;
  if (PLAIN_VALUE.test(text) && PLAIN_VALUE.lastIndex === end) return true;
  return parseMetricValue(text.slice(start, end)) !== undefined;
}

/** The value at text[start, end), already checked by isMetricValueAt. */
function metricValueAt(text: string, start: number, end: number): number {
  return parseMetricValue(text.slice(start, end))!;
}

/**
 * Why: the runs extractor needs only each metric's latest point (MLflow's order, isLaterMetric); this
 * finds it in a metric file's text by scanning characters, without a point object or substrings per
 * line: values are only parsed for the line that is latest at the end and for (step, timestamp) ties.
 * Lines that are not plain "<timestamp> <value> <step>" (CR line ends, other field counts, bad numbers)
 * send the whole text through parseMetricText, which gives the exact error and line number.
 */
export function latestInMetricText(text: string, file: string, key: string, runId: string): MetricPoint | undefined {
  if (text.includes('\r')) return latestOf(parseMetricText(text, file, key, runId));
  let found = false;
  let step = 0;
  let timestamp = 0;
  /** The latest line's value: parsed (valueKnown) or where its text is. */
  let value = 0;
  let valueKnown = false;
  let valueStart = 0;
  let valueEnd = 0;
  const length = text.length;
  for (let lineStart = 0; lineStart < length; ) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd < 0) lineEnd = length;
    if (lineEnd === lineStart) {
      lineStart++;
      continue;
    }
    const first = text.indexOf(' ', lineStart);
    const second = first < 0 || first >= lineEnd ? -1 : text.indexOf(' ', first + 1);
    if (first <= lineStart || second < 0 || second >= lineEnd) return latestOf(parseMetricText(text, file, key, runId));
    const candidateTimestamp = integerAt(text, lineStart, first);
    const candidateStep = integerAt(text, second + 1, lineEnd);
    if (candidateTimestamp === undefined || candidateStep === undefined || !isMetricValueAt(text, first + 1, second)) {
      return latestOf(parseMetricText(text, file, key, runId));
    }
    // isLaterMetric (types.ts) on plain numbers: max by (step, timestamp, value), NaN compared as 0.
    let later: boolean;
    let tie = false;
    if (!found) later = true;
    else if (candidateStep !== step) later = candidateStep > step;
    else if (candidateTimestamp !== timestamp) later = candidateTimestamp > timestamp;
    else {
      tie = true;
      if (!valueKnown) {
        value = metricValueAt(text, valueStart, valueEnd);
        valueKnown = true;
      }
      const candidateValue = metricValueAt(text, first + 1, second);
      later = (Number.isNaN(candidateValue) ? 0 : candidateValue) > (Number.isNaN(value) ? 0 : value);
      if (later) value = candidateValue;
    }
    if (later) {
      // A tie won on its value, parsed above; any other winner's value is only located, and parsed if it stays latest.
      if (!tie) {
        valueKnown = false;
        valueStart = first + 1;
        valueEnd = second;
      }
      found = true;
      step = candidateStep;
      timestamp = candidateTimestamp;
    }
    lineStart = lineEnd + 1;
  }
  if (!found) return undefined;
  return { key, value: valueKnown ? value : metricValueAt(text, valueStart, valueEnd), timestamp, step };
}

function latestOf(points: readonly MetricPoint[]): MetricPoint | undefined {
  let latest: MetricPoint | undefined;
  for (const point of points) if (latest === undefined || isLaterMetric(point, latest)) latest = point;
  return latest;
}

/** Metric files are first read into this buffer; one that fills it is measured and read (or streamed) on its own. */
const SMALL_READ_BYTES = 64 * 1024;
const smallRead = Buffer.allocUnsafe(SMALL_READ_BYTES);

/** The text of a metric file small enough to read in one call, or undefined when it must be streamed. */
function readSmallMetricText(file: string, runId: string): string | undefined {
  // Most metric files are a few KiB: open + one read + close, without a stat per file.
  let bytes: number;
  try {
    const fd = openSync(file, 'r');
    try {
      bytes = readSync(fd, smallRead, 0, SMALL_READ_BYTES, 0);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw new MlflowDataError(runId, file, `unreadable metric file (${errorCode(error)})`);
  }
  if (bytes < SMALL_READ_BYTES) return smallRead.toString('utf8', 0, bytes);
  let size: number;
  try {
    size = statSync(file).size;
  } catch (error) {
    throw new MlflowDataError(runId, file, `unreadable metric file (${errorCode(error)})`);
  }
  if (size > WHOLE_FILE_BYTES) return undefined;
  try {
    return readFileSync(file, UTF8);
  } catch (error) {
    throw new MlflowDataError(runId, file, `unreadable metric file (${errorCode(error)})`);
  }
}

/** A whole (small) metric file, or undefined when it is large enough to stream. */
function readSmallMetricFile(file: string, key: string, runId: string): MetricPoint[] | undefined {
  const text = readSmallMetricText(file, runId);
  return text === undefined ? undefined : parseMetricText(text, file, key, runId);
}

/** Streams one metric file, in batches; a bad line is an error naming the file and the line number. */
async function* metricFileBatches(file: string, key: string, runId: string): AsyncGenerator<MetricPoint[]> {
  const stream = createReadStream(file, { encoding: 'utf8' });
  const opened = new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', reject);
  });
  try {
    await opened;
  } catch (error) {
    throw new MlflowDataError(runId, file, `unreadable metric file (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let batch: MetricPoint[] = [];
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber++;
      if (line.trim() === '') continue;
      const parsed = parseMetricLine(key, line);
      if (typeof parsed === 'string') throw new MlflowDataError(runId, file, `line ${lineNumber}: ${parsed}`);
      batch.push(parsed);
      if (batch.length >= HISTORY_BATCH) {
        yield batch;
        batch = [];
      }
    }
  } finally {
    lines.close();
    stream.destroy();
  }
  if (batch.length > 0) yield batch;
}

interface ExperimentDir {
  id: string;
  dir: string;
  inTrash: boolean;
}

/** A flat copy of `text` that shares no memory with the string it was cut from. */
function ownString(text: string): string {
  return text.length < 13 ? text : (JSON.parse(JSON.stringify(text)) as string);
}

function ownNullableString(text: string | null): string | null {
  return text === null ? null : ownString(text);
}

/** Everything runData reads. */
const EVERY_DATA_KIND: ReadonlySet<FilterDataKind> = new Set(['params', 'tags', 'metrics']);

// Why: the file store reader of the MlflowReader interface.
export class FileStoreReader extends LocalArtifacts implements MlflowReader {
  readonly kind = 'file' as const;
  private readonly runDirs = new Map<string, string>();
  /** Run id → experiment folder, for run folders named by their run id. */
  private readonly runParents = new Map<string, string>();

  constructor(
    readonly location: string,
    private readonly options: ReaderOptions = {},
  ) {
    super();
  }

  /** Checks that `root` looks like a file store, with an error that says what to do otherwise. */
  static async open(root: string, options: ReaderOptions = {}): Promise<FileStoreReader> {
    const absolute = path.resolve(root);
    if (!(await isDirectory(absolute))) throw new Error(`MLflow source ${absolute} is not a directory (expected an mlruns/ file store)`);
    const reader = new FileStoreReader(absolute, options);
    const dirs = await reader.experimentDirs(true);
    let found = false;
    for (const exp of dirs) {
      try {
        await stat(path.join(exp.dir, 'meta.yaml'));
        found = true;
        break;
      } catch {
        // keep looking
      }
    }
    if (!found) {
      throw new Error(
        `${absolute} is not an MLflow file store: no <experiment id>/meta.yaml inside. If it only holds artifacts of a SQL store, ` +
          `set source to sqlite:///path/to/mlflow.db instead`,
      );
    }
    return reader;
  }

  private async experimentDirs(includeDeleted: boolean): Promise<ExperimentDir[]> {
    const out: ExperimentDir[] = [];
    for (const entry of await entries(this.location)) {
      if (DIGITS.test(entry.name) && entry.isDirectory()) out.push({ id: entry.name, dir: path.join(this.location, entry.name), inTrash: false });
    }
    if (includeDeleted) {
      const trash = path.join(this.location, '.trash');
      for (const entry of await entries(trash)) {
        if (DIGITS.test(entry.name) && entry.isDirectory()) out.push({ id: entry.name, dir: path.join(trash, entry.name), inTrash: true });
      }
    }
    return out;
  }

  private warn(message: string): void {
    this.options.onWarning?.(message);
  }

  async *experiments(options: { includeDeleted: boolean }): AsyncGenerator<Experiment> {
    for (const exp of await this.experimentDirs(options.includeDeleted)) {
      const file = path.join(exp.dir, 'meta.yaml');
      let meta: Meta;
      try {
        meta = await readMeta(file, undefined);
      } catch (error) {
        this.warn(`experiment folder ${exp.dir} skipped: ${(error as Error).message}`);
        continue;
      }
      const lifecycleStage = metaString(meta, 'lifecycle_stage', file, undefined) ?? (exp.inTrash ? 'deleted' : 'active');
      if (!options.includeDeleted && lifecycleStage === 'deleted') continue;
      yield {
        experimentId: exp.id,
        name: metaString(meta, 'name', file, undefined) ?? exp.id,
        artifactLocation: metaString(meta, 'artifact_location', file, undefined),
        lifecycleStage,
        creationTime: metaInteger(meta, 'creation_time', file, undefined),
        lastUpdateTime: metaInteger(meta, 'last_update_time', file, undefined),
        // The `tags:` mapping some meta.yaml files carry is a stale copy; the tags/ folder is the truth.
        tags: readKeyValues(path.join(exp.dir, 'tags'), undefined),
      };
    }
  }

  async *runs(experimentIds: readonly string[], query: RunQuery): AsyncGenerator<RunListing> {
    const filter = query.filter !== undefined && query.filter.trim() !== '' ? parseRunFilter(query.filter) : undefined;
    const wanted = new Set(experimentIds);
    for (const exp of await this.experimentDirs(query.includeDeleted)) {
      if (!wanted.has(exp.id)) continue;
      for (const entry of sortedEntriesSync(exp.dir)) {
        if (RESERVED_EXPERIMENT_FOLDERS.has(entry.name) || !entry.isDirectory()) continue;
        const runDir = path.join(exp.dir, entry.name);
        const listing = await this.readRunInfo(exp, runDir, entry.name);
        if (listing === undefined) continue;
        if (listing.ok) {
          const run = listing.run;
          if (!query.includeDeleted && run.lifecycleStage === 'deleted') continue;
          // Folders named by their run id (as MLflow names them) are remembered by their experiment
          // folder, a string all its runs share, instead of one path string per run.
          if (entry.name === run.runId) this.runParents.set(run.runId, exp.dir);
          else this.runDirs.set(run.runId, runDir);
          if (filter !== undefined) {
            try {
              if (!filter.matches(run, filter.needsData ? await this.readData(run, filter.dataKinds, false) : undefined)) continue;
            } catch (error) {
              if (error instanceof MlflowDataError) {
                yield { ok: false, runId: run.runId, experimentId: run.experimentId, error };
                continue;
              }
              throw error;
            }
          }
        }
        yield listing;
      }
    }
  }

  private async readRunInfo(exp: ExperimentDir, runDir: string, folder: string): Promise<RunListing | undefined> {
    const file = path.join(runDir, 'meta.yaml');
    const looksLikeRun = RUN_ID.test(folder);
    let meta: Meta;
    try {
      meta = await readMeta(file, looksLikeRun ? folder : undefined);
    } catch (error) {
      if (!(error instanceof MlflowDataError)) throw error;
      if (!looksLikeRun) {
        this.warn(`folder ${runDir} in experiment ${exp.id} is not a run (${error.message}); ignored`);
        return undefined;
      }
      return { ok: false, runId: folder, experimentId: exp.id, error };
    }
    try {
      const runId = metaString(meta, 'run_id', file, folder) ?? metaString(meta, 'run_uuid', file, folder) ?? folder;
      const experimentId = metaString(meta, 'experiment_id', file, runId) ?? exp.id;
      if (experimentId !== exp.id) {
        this.warn(`run ${runId} in ${runDir} says experiment_id ${experimentId}, not ${exp.id}; ignored as MLflow does`);
        return undefined;
      }
      const statusText = metaString(meta, 'status', file, runId);
      const status = statusText === null ? 'RUNNING' : (RUN_STATUS_BY_NUMBER[statusText.trim()] ?? statusText);
      let runName = metaString(meta, 'run_name', file, runId) ?? metaString(meta, 'name', file, runId);
      if (runName === null) {
        try {
          runName = readFileSync(path.join(runDir, 'tags', 'mlflow.runName'), UTF8);
        } catch {
          runName = null;
        }
      }
      // Listings live for the whole extraction: their strings are copied out of meta.yaml's text,
      // which a slice would otherwise keep alive (≈ 3 MiB of V8 heap per 5,000 runs).
      const run: RunInfo = {
        runId: ownString(runId),
        experimentId: experimentId === exp.id ? exp.id : ownString(experimentId),
        runName: ownNullableString(runName),
        userId: ownNullableString(metaString(meta, 'user_id', file, runId)),
        status: ownString(status),
        startTime: metaInteger(meta, 'start_time', file, runId),
        endTime: metaInteger(meta, 'end_time', file, runId),
        deletedTime: metaInteger(meta, 'deleted_time', file, runId),
        lifecycleStage: ownString(metaString(meta, 'lifecycle_stage', file, runId) ?? 'active'),
        artifactUri: ownNullableString(metaString(meta, 'artifact_uri', file, runId)),
      };
      return { ok: true, run };
    } catch (error) {
      if (error instanceof MlflowDataError) return { ok: false, runId: folder, experimentId: exp.id, error };
      throw error;
    }
  }

  private async runDir(run: RunInfo): Promise<string> {
    const known = this.runDirs.get(run.runId);
    if (known !== undefined) return known;
    const parent = this.runParents.get(run.runId);
    if (parent !== undefined) return path.join(parent, run.runId);
    for (const candidate of [path.join(this.location, run.experimentId, run.runId), path.join(this.location, '.trash', run.experimentId, run.runId)]) {
      if (await isDirectory(candidate)) {
        this.runDirs.set(run.runId, candidate);
        return candidate;
      }
    }
    throw new MlflowDataError(run.runId, path.join(this.location, run.experimentId, run.runId), 'run folder not found');
  }

  async runData(run: RunInfo): Promise<RunData> {
    return this.readData(run, EVERY_DATA_KIND, true);
  }

  /**
   * The parts of a run's data named by `kinds` (the others empty), and its dataset inputs when asked. A
   * filter reads only what it looks at: one on params (mlflow-artifacts picking runs by a param) reads one
   * folder of each run instead of four, and not the latest point of every metric.
   */
  private async readData(run: RunInfo, kinds: ReadonlySet<FilterDataKind>, inputs: boolean): Promise<RunData> {
    const dir = await this.runDir(run);
    return {
      params: kinds.has('params') ? readKeyValues(path.join(dir, 'params'), run.runId) : [],
      tags: kinds.has('tags') ? readKeyValues(path.join(dir, 'tags'), run.runId) : [],
      latestMetrics: kinds.has('metrics') ? await this.latestMetrics(dir, run) : [],
      inputs: inputs ? await this.datasetInputs(dir, run) : [],
    };
  }

  /** The latest point of each of the run's metrics. */
  private async latestMetrics(dir: string, run: RunInfo): Promise<MetricPoint[]> {
    const latestMetrics: MetricPoint[] = [];
    for (const [key, file] of walkFilesSync(path.join(dir, 'metrics'), run.runId)) {
      const text = readSmallMetricText(file, run.runId);
      let latest: MetricPoint | undefined;
      if (text !== undefined) latest = latestInMetricText(text, file, key, run.runId);
      else {
        for await (const batch of metricFileBatches(file, key, run.runId)) {
          const batchLatest = latestOf(batch);
          if (batchLatest !== undefined && (latest === undefined || isLaterMetric(batchLatest, latest))) latest = batchLatest;
        }
      }
      if (latest !== undefined) latestMetrics.push(latest);
    }
    return latestMetrics;
  }

  private async datasetInputs(runDir: string, run: RunInfo): Promise<DatasetInput[]> {
    const out: DatasetInput[] = [];
    const inputsDir = path.join(runDir, 'inputs');
    // Most runs have no inputs/ folder: a stat is cheaper than a readdir that throws ENOENT.
    if (!existsSync(inputsDir)) return out;
    for (const entry of sortedEntriesSync(inputsDir)) {
      const file = path.join(runDir, 'inputs', entry.name, 'meta.yaml');
      const meta = await readMeta(file, run.runId);
      if (metaString(meta, 'source_type', file, run.runId) !== 'DATASET') continue;
      const sourceId = metaString(meta, 'source_id', file, run.runId);
      if (sourceId === null) continue;
      const datasetFile = path.join(path.dirname(runDir), 'datasets', sourceId, 'meta.yaml');
      const dataset = await readMeta(datasetFile, run.runId);
      const tags = meta['tags'];
      const context = tags !== null && typeof tags === 'object' && !Array.isArray(tags) ? tags['mlflow.data.context'] : null;
      out.push({
        name: metaString(dataset, 'name', datasetFile, run.runId) ?? '',
        digest: metaString(dataset, 'digest', datasetFile, run.runId) ?? '',
        sourceType: metaString(dataset, 'source_type', datasetFile, run.runId),
        source: metaString(dataset, 'source', datasetFile, run.runId),
        context: typeof context === 'string' ? context : null,
      });
    }
    return out;
  }

  async metricKeys(run: RunInfo): Promise<string[]> {
    return walkFilesSync(path.join(await this.runDir(run), 'metrics'), run.runId).map(([key]) => key);
  }

  async *metricHistory(run: RunInfo, key: string): AsyncGenerator<MetricPoint[]> {
    const file = path.join(await this.runDir(run), 'metrics', ...key.split('/'));
    const whole = readSmallMetricFile(file, key, run.runId);
    if (whole === undefined) {
      yield* metricFileBatches(file, key, run.runId);
      return;
    }
    for (let start = 0; start < whole.length; start += HISTORY_BATCH) yield whole.length <= HISTORY_BATCH ? whole : whole.slice(start, start + HISTORY_BATCH);
  }

  /** The run's artifact folder: the recorded URI when it exists, else <run dir>/artifacts (a moved store). */
  protected async artifactRoot(run: RunInfo): Promise<string | undefined> {
    const recorded = run.artifactUri === null ? undefined : localPathOf(run.artifactUri);
    if (recorded !== undefined && (await isDirectory(recorded))) return recorded;
    const relocated = path.join(await this.runDir(run), 'artifacts');
    if (await isDirectory(relocated)) return relocated;
    if (run.artifactUri !== null && recorded === undefined) {
      throw new MlflowDataError(run.runId, run.artifactUri, 'artifacts live in a remote store the file reader cannot reach; read this store through its tracking server (source: http://…)');
    }
    return undefined;
  }

  async close(): Promise<void> {
    this.runDirs.clear();
    this.runParents.clear();
  }
}

