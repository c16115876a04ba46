// Reader for an MLflow tracking server over its REST API: experiments/search and runs/search paged with
// page tokens (max_results always sent: an omitted one means 0 to some server versions); on a
// SQL-backed server the chosen experiments are listed together, in offset pages fetched in parallel
// (same runs, same order as one sequential listing). Params, tags, latest metrics and dataset inputs
// are taken from the runs/search pages (runs/get only for a run not listed by this reader, e.g. on a
// resume). Metric history is prefetched for windows of listed runs, in listing order: one
// get-history-bulk request per metric key for up to 100 runs (lossless below its 25 000-point cap; a
// capped answer is re-asked for the runs it may have cut), or, where the server does not offer it,
// metrics/get-history per run and key (25 000 points per page, as the Python client) with several
// requests in flight. Artifacts are listed with artifacts/list and downloaded through the
// mlflow-artifacts proxy, the local artifact path when this machine can see it, or /get-artifact.
// NaN/±Infinity arrive as the strings "NaN"/"Infinity"/"-Infinity" (bare tokens from the Flask
// endpoints); a SQL-backed server's ±DBL_MAX is decoded to ±Infinity like the SQL reader.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { chooseExperiments } from './experiment-choice.js';
import { isDirectory, localPathOf } from './local-files.js';
import { inOrderWithLookahead, startIteration, type StartedIteration } from './lookahead.js';
import { RestClient, RestError, type RestOptions } from './rest-client.js';
import {
  decodeStoredDouble,
  MlflowDataError,
  type ArtifactFile,
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
import path from 'node:path';

const SEARCH_PAGE = 1000;
/**
 * Parallel listing (SQL-backed servers): a first page of PARALLEL_PAGE runs per listing, then
 * PARALLEL_PAGES pages in flight, of PARALLEL_PAGE runs, twice as many after every PAGES_PER_SIZE pages
 * (up to PARALLEL_PAGE_MAX). A page costs the server ~11 ms plus ~0.85 ms per run (CPU of MLflow 3.17's
 * uvicorn workers, SQLite store: 10 ms for an empty page, 92 ms for 100 runs, 450 ms for 500): pages
 * of equal, moderate size keep its workers equally busy and the last page short (pages doubling from the
 * first made the last page the longest, alone at the end); the growth keeps the number of requests
 * small for long listings. At most PARALLEL_PAGES - 1 pages are asked past the end (a fixed cost each).
 *
 * PARALLEL_PAGE_MAX bounds what the pages in flight hold (a run with its params, tags and metrics is ~1-3 KB
 * of JSON, ~3 KB on the bench stores, and more once parsed): with pages of up to SEARCH_PAGE, mlflow-runs
 * on the 10× store peaked at 127-128 MiB against 107-109 MiB on the 1× store, whose experiments never get
 * past 200-run pages; with 200 at most, 122-123 MiB, in the same time within noise (more, smaller requests
 * on a large store only). 100 at most saved another ~1.5 MiB at 10× (115-116 against 116-119 MiB, one
 * listing of all experiments) and cost a 30× run ~10% of its time.
 */
const PARALLEL_PAGE = 100;
const PARALLEL_PAGE_MAX = 200;
const PARALLEL_PAGES = 3;
const PAGES_PER_SIZE = 4;
/** Offset pages asked together with a listing's first page, before its token shows they are MLflow's offset pages. */
const SPECULATIVE_PAGES = 1;
/** Experiments one runs/search listing asks for on a SQL-backed server (see listRuns). */
const EXPERIMENTS_PER_LISTING = 100;
/** Listings (an experiment, or a group of them on a SQL-backed server) requested while an earlier one is still being yielded. */
const EXPERIMENT_LOOKAHEAD = 2;
const HISTORY_PAGE = 25_000;
/**
 * Run listings the early start (startSelection) keeps until the extractor takes them; past that the
 * listing waits for the extractor. The first few hundred runs are what the server can answer while the
 * extractor loads (~150 ms); a larger buffer would only hold a large store's listing (runs with their
 * params, tags and metrics) in memory: mlflow-runs on the 10× store peaked 18 MiB above the 1× store.
 */
const EARLY_LISTING_BUFFER = 256;
/** get-history-bulk (handlers.py: get_metric_history_bulk_handler): at most 100 run ids and 25 000 points per answer, no paging. */
const BULK_PATH = '/ajax-api/2.0/mlflow/metrics/get-history-bulk';
const BULK_RUNS = 100;
const BULK_CAP = 25_000;
/** Metric-history points a prefetch window fetches at most (the window being read and the next one are held); the rest is read when asked for. */
const WINDOW_POINTS = 100_000;
/** Requests one window keeps going (the client bounds what is in flight overall). */
const WINDOW_WORKERS = 4;

type Json = Record<string, unknown>;

function list(value: unknown): Json[] {
  return Array.isArray(value) ? (value as Json[]) : [];
}

function str(value: unknown): string | null {
  return value === undefined || value === null ? null : String(value);
}

function int(value: unknown): number | null {
  if (value === undefined || value === null || value === '') return null;
  const parsed = Number(value);
  return Number.isFinite(parsed) ? parsed : null;
}

function double(value: unknown): number {
  if (typeof value === 'number') return decodeStoredDouble(value);
  if (value === 'NaN') return NaN;
  if (value === 'Infinity') return Infinity;
  if (value === '-Infinity') return -Infinity;
  const parsed = Number(value);
  return Number.isNaN(parsed) ? NaN : decodeStoredDouble(parsed);
}

function keyValues(value: unknown): KeyValue[] {
  return list(value).map((entry) => ({ key: String(entry['key']), value: str(entry['value']) ?? '' }));
}

function metricPoint(entry: Json, key?: string): MetricPoint {
  return { key: key ?? String(entry['key']), value: double(entry['value']), timestamp: int(entry['timestamp']) ?? 0, step: int(entry['step']) ?? 0 };
}

/** Params, tags, latest metrics and dataset inputs of a run as runs/search and runs/get return it. */
function runDataOf(found: Json): RunData {
  const data = (found['data'] ?? {}) as Json;
  const inputs = (found['inputs'] ?? {}) as Json;
  const datasets: DatasetInput[] = list(inputs['dataset_inputs']).map((input) => {
    const dataset = (input['dataset'] ?? {}) as Json;
    const context = list(input['tags']).find((tag) => tag['key'] === 'mlflow.data.context');
    return {
      name: str(dataset['name']) ?? '',
      digest: str(dataset['digest']) ?? '',
      sourceType: str(dataset['source_type']),
      source: str(dataset['source']),
      context: context === undefined ? null : str(context['value']),
    };
  });
  return {
    params: keyValues(data['params']),
    tags: keyValues(data['tags']),
    latestMetrics: list(data['metrics']).map((entry) => metricPoint(entry)),
    inputs: datasets,
  };
}

function runInfo(info: Json): RunInfo {
  return {
    runId: String(info['run_id'] ?? info['run_uuid']),
    experimentId: String(info['experiment_id']),
    runName: str(info['run_name']),
    userId: str(info['user_id']),
    status: str(info['status']) ?? 'RUNNING',
    startTime: int(info['start_time']),
    endTime: int(info['end_time']),
    deletedTime: null,
    lifecycleStage: str(info['lifecycle_stage']) ?? 'active',
    artifactUri: str(info['artifact_uri']),
  };
}

/** Reads MLflow's client environment: token / basic auth, insecure TLS, timeout and retries. */
export function restOptionsFromEnv(env: NodeJS.ProcessEnv): RestOptions {
  const timeout = Number(env['MLFLOW_HTTP_REQUEST_TIMEOUT']);
  const retries = Number(env['MLFLOW_HTTP_REQUEST_MAX_RETRIES']);
  return {
    token: env['MLFLOW_TRACKING_TOKEN'],
    username: env['MLFLOW_TRACKING_USERNAME'],
    password: env['MLFLOW_TRACKING_PASSWORD'],
    insecureTls: /^(true|1)$/i.test(env['MLFLOW_TRACKING_INSECURE_TLS'] ?? ''),
    ...(Number.isFinite(timeout) && timeout > 0 ? { timeoutMs: timeout * 1000 } : {}),
    ...(Number.isFinite(retries) && retries >= 0 ? { attempts: retries + 1 } : {}),
  };
}

/** One metric's history of one run as prefetched: its points, and where get-history goes on when it has more. */
interface PrefetchedSeries {
  points: MetricPoint[];
  next?: string;
}

/** Prefetched metric history of the listed runs at plan positions [first, end). */
interface HistoryWindow {
  first: number;
  end: number;
  ready: Promise<void>;
  series: Map<string, PrefetchedSeries>;
  held: number;
}

/** A listed run and the metric keys its runs/search entry names. */
interface PlannedRun {
  runId: string;
  keys: string[];
}

function seriesId(runId: string, key: string): string {
  return `${runId}\n${key}`;
}

// Why: the tracking-server reader of the MlflowReader interface.
export class RestReader implements MlflowReader {
  readonly kind = 'rest' as const;
  private readonly client: RestClient;
  /**
   * Run data from the runs/search pages, until the run is read (runData or metricKeys takes it out):
   * runs/search already returns params, tags, latest metrics and inputs, so runs/get per run was one
   * extra request per run.
   */
  private readonly listed = new Map<string, RunData>();
  /**
   * Listed runs in listing order: what the metric-history prefetch follows. Entries behind the oldest
   * open window are dropped (runs are read in listing order), so the plan does not grow with the store.
   * Kept only once history is asked for (see startPlanning): a consumer that never reads history
   * (mlflow-runs, mlflow-artifacts) would otherwise hold every listed run's metric keys to the end.
   */
  private readonly plan: (PlannedRun | undefined)[] = [];
  private readonly planPosition = new Map<string, number>();
  /** Whether metric history was asked for (runs listed from then on are planned). */
  private planning = false;
  /** Plan positions below this were dropped. */
  private planDropped = 0;
  /** Plan positions below this were given to a window. */
  private planCovered = 0;
  /** Open prefetch windows, oldest first. */
  private windows: HistoryWindow[] = [];
  /** Whether the server answers get-history-bulk (unknown until asked). */
  private bulk: 'unknown' | 'yes' | 'no' = 'unknown';
  private bulkProbe: Promise<void> | undefined;
  /** Runs per prefetch window: as many as one bulk request takes, fewer when histories are long. */
  private windowRuns = BULK_RUNS;
  private sqlBackedAnswer: Promise<boolean> | undefined;
  /** The experiments listed by startSelection, for the experiments() call that asks for the same. */
  private startedExperiments: { includeDeleted: boolean; all: Promise<Experiment[]> } | undefined;
  /** The run listing started by startSelection, for the runs() call that asks for the same runs. */
  private startedRuns: { key: string; listing: StartedIteration<RunListing> } | undefined;
  private closed = false;

  constructor(
    readonly location: string,
    options: RestOptions = {},
  ) {
    this.client = new RestClient(location, options);
  }

  private async perRun<T>(run: RunInfo, what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof RestError) throw new MlflowDataError(run.runId, `${this.location} ${what}`, error.message);
      throw error;
    }
  }

  /**
   * Starts what an MLflow extractor asks first (selection.ts openRunSelection: the experiments, then the
   * runs of the chosen ones) before the extractor and the SDK are loaded: the tracking server works on
   * the first pages of runs during those ~150 ms instead of waiting for them. experiments() and runs()
   * hand out what was started when asked for the same; anything else is listed as usual (and the
   * started listing is stopped). `experiments` are ids or names, resolved as openRunSelection does.
   */
  startSelection(options: { includeDeleted: boolean; filter?: string | undefined; experiments?: readonly string[] | undefined }): void {
    const all = (async () => {
      const found: Experiment[] = [];
      // duckvisor: allow no-progress-in-loop, unbounded-accumulation -- the experiments, what openRunSelection holds for every extractor
      for await (const experiment of this.listExperiments(options)) found.push(experiment);
      return found;
    })();
    all.catch(() => undefined); // the experiments() call that takes it reports the failure
    this.startedExperiments = { includeDeleted: options.includeDeleted, all };
    void all.then((found) => {
      const choice = chooseExperiments(found, options.experiments);
      if ('missing' in choice || this.closed) return; // openRunSelection fails on a missing one
      const chosen = choice.chosen.map((e) => e.experimentId);
      const query: RunQuery = { includeDeleted: options.includeDeleted, filter: options.filter };
      this.startedRuns = { key: runsKey(chosen, query), listing: startIteration(this.listRuns(chosen, query), EARLY_LISTING_BUFFER) };
    }, () => undefined);
  }

  async *experiments(options: { includeDeleted: boolean }): AsyncGenerator<Experiment> {
    const started = this.startedExperiments;
    this.startedExperiments = undefined;
    if (started !== undefined && started.includeDeleted === options.includeDeleted) {
      yield* await started.all;
      return;
    }
    yield* this.listExperiments(options);
  }

  private async *listExperiments(options: { includeDeleted: boolean }): AsyncGenerator<Experiment> {
    // Asked now, so the answer is there when the runs are listed.
    void this.sqlBacked();
    let token: string | undefined;
    do {
      const page = await this.client.json('POST', '/api/2.0/mlflow/experiments/search', {
        max_results: SEARCH_PAGE,
        view_type: options.includeDeleted ? 'ALL' : 'ACTIVE_ONLY',
        order_by: ['experiment_id ASC'],
        ...(token !== undefined ? { page_token: token } : {}),
      });
      // duckvisor: allow no-progress-in-loop -- a reader's page loop: the extractor consuming this generator reports progress per run
      for (const exp of list(page['experiments'])) {
        yield {
          experimentId: String(exp['experiment_id']),
          name: String(exp['name']),
          artifactLocation: str(exp['artifact_location']),
          lifecycleStage: str(exp['lifecycle_stage']) ?? 'active',
          creationTime: int(exp['creation_time']),
          lastUpdateTime: int(exp['last_update_time']),
          tags: keyValues(exp['tags']),
        };
      }
      token = nextToken(page, token);
    } while (token !== undefined);
  }

  runs(experimentIds: readonly string[], query: RunQuery): AsyncIterable<RunListing> {
    const started = this.startedRuns;
    this.startedRuns = undefined;
    if (started !== undefined && started.key === runsKey(experimentIds, query)) return started.listing.items;
    started?.listing.stop();
    return this.listRuns(experimentIds, query);
  }

  private async *listRuns(experimentIds: readonly string[], query: RunQuery): AsyncGenerator<RunListing> {
    const seen = new Set<string>();
    const sqlBacked = experimentIds.length > 0 && (await this.sqlBacked());
    // A SQL-backed server lists many experiments in one runs/search as cheaply as one (its cost is per
    // page and per run), so their runs are listed together: fewer pages, and no page asked past the end
    // of every short experiment. A FileStore-backed server reads every experiment asked for per page.
    const groups = sqlBacked ? chunks(experimentIds, EXPERIMENTS_PER_LISTING) : experimentIds.map((experimentId) => [experimentId]);
    const sources = groups.map((group) => () => this.listingPages(group, query, sqlBacked)[Symbol.asyncIterator]());
    for await (const page of inOrderWithLookahead(sources, EXPERIMENT_LOOKAHEAD)) {
      // The whole page goes into the plan first: a caller that reads history while listing gets it prefetched for the page.
      const infos: RunInfo[] = [];
      // duckvisor: allow no-progress-in-loop -- a reader's page loop: the extractor consuming this generator reports progress per run
      for (const run of page) {
        const info = runInfo((run['info'] ?? {}) as Json);
        // Offset pages can repeat a run when runs are created while listing: each run comes once.
        if (seen.has(info.runId)) continue;
        seen.add(info.runId);
        if (run['data'] !== undefined) {
          const data = runDataOf(run);
          this.listed.set(info.runId, data);
          this.addToPlan(info.runId, data);
        }
        // duckvisor: allow unbounded-accumulation -- one page's runs (at most SEARCH_PAGE), created anew for every page
        infos.push(info);
      }
      for (const info of infos) yield { ok: true, run: info };
    }
  }

  /** One runs/search request (a page of raw runs, and the token of the next one). */
  private async searchRuns(experimentIds: readonly string[], query: RunQuery, page: { max: number; token?: string | undefined }): Promise<{ runs: Json[]; next: string | undefined }> {
    const answer = await this.client.json('POST', '/api/2.0/mlflow/runs/search', {
      experiment_ids: experimentIds,
      run_view_type: query.includeDeleted ? 'ALL' : 'ACTIVE_ONLY',
      max_results: page.max,
      order_by: ['attributes.start_time ASC'],
      ...(query.filter !== undefined && query.filter.trim() !== '' ? { filter: query.filter } : {}),
      ...(page.token !== undefined ? { page_token: page.token } : {}),
    }, { freshConnection: true });
    return { runs: list(answer['runs']), next: nextToken(answer, page.token) };
  }

  /**
   * Whether the server says (server-info, MLflow ≥ 3) that it is SQL-backed, where a page of runs costs
   * the runs it returns: there, pages may be requested at once (listingPages). A FileStore-backed
   * server reads the whole experiment for every page, so parallel pages would multiply its work.
   */
  private sqlBacked(): Promise<boolean> {
    this.sqlBackedAnswer ??= this.client
      .json('GET', '/api/3.0/mlflow/server-info')
      .then((info) => info['store_type'] === 'SqlStore')
      .catch(() => false);
    return this.sqlBackedAnswer;
  }

  /**
   * The runs of one or more experiments by start_time ascending, in pages: plain paging with the server's tokens,
   * or, on a SQL-backed server, a first page of PARALLEL_PAGE runs and then, when its page token is
   * MLflow's offset token (so a token for any offset means what it says), pages requested a few at once
   * with tokens for their offsets: the very pages sequential paging gets (same runs, same order), yielded
   * in order until one says it is the last. The first page's token is the test; SPECULATIVE_PAGES of the
   * offset pages are asked together with the first page (the server works on them while this process is
   * busy loading, instead of idling until the first answer is handled) and dropped if the test fails.
   */
  private async *listingPages(experimentIds: readonly string[], query: RunQuery, sqlBacked: boolean): AsyncGenerator<Json[]> {
    let token: string | undefined;
    if (sqlBacked) {
      const first = this.searchRuns(experimentIds, query, { max: PARALLEL_PAGE });
      // Its requests stop by themselves unless the first page's token is the offset token tested below.
      const rest = this.offsetPages(experimentIds, query, PARALLEL_PAGE, first);
      const firstPage = await first;
      if (firstPage.next !== undefined && firstPage.next === offsetToken(PARALLEL_PAGE)) {
        if (firstPage.runs.length > 0) yield firstPage.runs;
        yield* rest;
        return;
      }
      if (firstPage.runs.length > 0) yield firstPage.runs;
      if (firstPage.next === undefined) return;
      token = firstPage.next;
    }
    // duckvisor: allow no-progress-in-loop -- a reader's page loop: the extractor consuming this generator reports progress per run
    do {
      const page = await this.searchRuns(experimentIds, query, { max: SEARCH_PAGE, token });
      if (page.runs.length > 0) yield page.runs;
      token = page.next;
    } while (token !== undefined);
  }

  /**
   * Pages of one listing from `start` on, requested a few at once with offset tokens (see
   * listingPages); the first requests go out at once, before the pages are iterated. While `first`
   * (the page before `start`) is unanswered, SPECULATIVE_PAGES at most; none past a `first` that ends
   * the listing; none at all once `first` failed or its token is not MLflow's offset token.
   */
  private offsetPages(experimentIds: readonly string[], query: RunQuery, start: number, first: Promise<{ next: string | undefined }>): AsyncGenerator<Json[]> {
    // Pages are requested as answers arrive (not as the caller consumes them, which may take a while):
    // PARALLEL_PAGES unanswered at most, and at most PARALLEL_PAGES answered pages waiting to be consumed.
    const requested: Promise<{ runs: Json[]; next: string | undefined }>[] = [];
    let unanswered = 0;
    let offset = start;
    let launched = 0;
    /** Set by the first answer that ends the listing: nothing is requested past it any more. */
    let ended = false;
    let stopped = false;
    let confirmed = false;
    first.then(
      (answer) => {
        // Not MLflow's offset token: listingPages pages with the server's tokens instead.
        if (answer.next !== undefined && answer.next !== offsetToken(start)) stopped = true;
        if (answer.next === undefined) ended = true;
        confirmed = true;
        fill();
      },
      () => {
        stopped = true;
      },
    );
    const fill = (): void => {
      // duckvisor: allow no-progress-in-loop -- launches at most PARALLEL_PAGES requests; the extractor consuming the pages reports progress per run
      while (!ended && !stopped && unanswered < (confirmed ? PARALLEL_PAGES : SPECULATIVE_PAGES) && requested.length < 2 * PARALLEL_PAGES) {
        const max = Math.min(PARALLEL_PAGE_MAX, PARALLEL_PAGE * 2 ** Math.floor(launched++ / PAGES_PER_SIZE));
        const page = this.searchRuns(experimentIds, query, { max, token: offsetToken(offset) });
        unanswered++;
        page.then(
          (answer) => {
            unanswered--;
            if (answer.next === undefined) ended = true;
            fill();
          },
          () => {
            unanswered--; // surfaced when its turn comes
          },
        );
        requested.push(page);
        offset += max;
      }
    };
    // After this turn: the first pages of the experiments started together go out before these (requests
    // on fresh connections leave one at a time, see rest-client.ts).
    queueMicrotask(fill);
    return (async function* pages(): AsyncGenerator<Json[]> {
      try {
        for (;;) {
          fill();
          const page = await requested.shift()!;
          if (page.runs.length > 0) yield page.runs;
          // Where sequential paging would stop; pages requested past it are dropped.
          if (page.next === undefined) return;
        }
      } finally {
        stopped = true;
      }
    })();
  }

  /**
   * The first call that reads history plans the runs listed and not read yet (the listing's buffer, in
   * listing order, as `listed` keeps them), and every run listed after it.
   */
  private startPlanning(): void {
    if (this.planning) return;
    this.planning = true;
    for (const [runId, data] of this.listed) this.addToPlan(runId, data);
  }

  private addToPlan(runId: string, data: RunData): void {
    if (!this.planning) return;
    const keys = [...new Set(data.latestMetrics.map((metric) => metric.key))];
    if (keys.length === 0) return;
    this.planPosition.set(runId, this.plan.length);
    this.plan.push({ runId, keys });
  }

  private async getRun(run: RunInfo): Promise<Json> {
    const answer = await this.client.json('GET', '/api/2.0/mlflow/runs/get', { run_id: run.runId });
    const found = answer['run'];
    if (found === null || typeof found !== 'object') throw new RestError(`runs/get for ${run.runId} returned no run`, undefined, 'runs/get');
    return found as Json;
  }

  async runData(run: RunInfo): Promise<RunData> {
    const listed = this.listed.get(run.runId);
    if (listed !== undefined) {
      this.listed.delete(run.runId);
      return listed;
    }
    return this.perRun(run, 'runs/get', async () => runDataOf(await this.getRun(run)));
  }

  async metricKeys(run: RunInfo): Promise<string[]> {
    this.startPlanning();
    // A listed run whose data was already read still has its keys in the plan (no runs/get needed).
    const position = this.listed.has(run.runId) ? undefined : this.planPosition.get(run.runId);
    const planned = position === undefined ? undefined : this.plan[position];
    if (planned !== undefined) return [...planned.keys];
    const data = await this.runData(run);
    return [...new Set(data.latestMetrics.map((metric) => metric.key))];
  }

  async *metricHistory(run: RunInfo, key: string): AsyncGenerator<MetricPoint[]> {
    this.startPlanning();
    let token: string | undefined;
    const prefetched = await this.prefetchedHistory(run.runId, key);
    if (prefetched !== undefined) {
      for (let from = 0; from < prefetched.points.length; from += HISTORY_PAGE) yield prefetched.points.slice(from, from + HISTORY_PAGE);
      if (prefetched.next === undefined) return;
      token = prefetched.next;
    }
    do {
      const page = await this.historyPage(run, key, token);
      if (page.points.length > 0) yield page.points;
      if (page.next !== undefined && page.points.length === 0) {
        throw new MlflowDataError(run.runId, `${this.location} metrics/get-history ${key}`, 'the server returned an empty page with a next_page_token (MLflow issue #23916); upgrade the server');
      }
      token = page.next;
    } while (token !== undefined);
  }

  private async historyPage(run: { runId: string }, key: string, token: string | undefined): Promise<{ points: MetricPoint[]; next: string | undefined }> {
    const page = await this.perRun(run as RunInfo, `metrics/get-history ${key}`, () =>
      this.client.json('GET', '/api/2.0/mlflow/metrics/get-history', {
        run_id: run.runId,
        metric_key: key,
        max_results: HISTORY_PAGE,
        ...(token !== undefined ? { page_token: token } : {}),
      }),
    );
    // duckvisor: allow no-progress-in-loop -- a reader's page loop: the extractor consuming this generator reports progress per run
    return { points: list(page['metrics']).map((entry) => metricPoint(entry, key)), next: nextToken(page, token) };
  }

  /**
   * The prefetched history of a listed run's metric, or undefined when it was not prefetched (a run not
   * listed here, one read out of listing order, a series too long for a bulk answer, a failed request:
   * those are read with metrics/get-history, which reports failures for the run).
   */
  private async prefetchedHistory(runId: string, key: string): Promise<PrefetchedSeries | undefined> {
    const position = this.planPosition.get(runId);
    if (position === undefined || this.closed) return undefined;
    let window = this.windows.find((open) => position >= open.first && position < open.end);
    if (window === undefined) {
      if (position < this.planCovered) return undefined;
      window = this.openWindow(position);
    }
    // Runs are read in listing order: windows before this one, and their runs' plan, are done with.
    const index = this.windows.indexOf(window);
    if (index > 0) {
      this.windows = this.windows.slice(index);
      this.dropPlanBefore(window.first);
    }
    // Keep the server busy with the next window while this one is written.
    if (this.windows.length === 1 && this.planCovered < this.plan.length) this.openWindow(this.planCovered);
    await window.ready;
    const id = seriesId(runId, key);
    const series = window.series.get(id);
    window.series.delete(id);
    return series;
  }

  private dropPlanBefore(position: number): void {
    for (; this.planDropped < position; this.planDropped++) {
      const planned = this.plan[this.planDropped];
      if (planned !== undefined) this.planPosition.delete(planned.runId);
      this.plan[this.planDropped] = undefined;
    }
  }

  /** Listed runs whose metric keys the prefetch still holds (at most a few windows' worth once history is being read). */
  get plannedRuns(): number {
    return this.planPosition.size;
  }

  private openWindow(first: number): HistoryWindow {
    const end = Math.min(this.plan.length, first + this.windowRuns);
    this.planCovered = end;
    const window: HistoryWindow = { first, end, series: new Map(), held: 0, ready: Promise.resolve() };
    window.ready = this.fillWindow(window).catch(() => undefined);
    this.windows.push(window);
    return window;
  }

  /** Fetches a window's history, key by key (a few keys at once), until its points budget is used. */
  private async fillWindow(window: HistoryWindow): Promise<void> {
    const runsByKey = new Map<string, string[]>();
    // duckvisor: allow no-progress-in-loop -- groups one window's runs by metric key; the extractor consuming the histories reports progress per run
    for (const planned of this.plan.slice(window.first, window.end)) {
      if (planned === undefined) continue;
      for (const key of planned.keys) {
        const runIds = runsByKey.get(key);
        // duckvisor: allow unbounded-accumulation -- one window's runs (at most windowRuns) by key, built anew for every window
        if (runIds === undefined) runsByKey.set(key, [planned.runId]);
        else runIds.push(planned.runId);
      }
    }
    const queue = [...runsByKey];
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
        if (this.closed || window.held >= WINDOW_POINTS) return; // the rest is read per key when asked for
        const [key, runIds] = item;
        // The first bulk request tells whether the server has the endpoint; the others wait for its answer.
        if (this.bulk === 'unknown' && this.bulkProbe !== undefined) await this.bulkProbe;
        if (this.bulk !== 'no') {
          try {
            const fetching = this.fetchBulk(window, key, runIds);
            if (this.bulk === 'unknown') this.bulkProbe ??= fetching.catch(() => undefined);
            await fetching;
            continue;
          } catch (error) {
            // A server (or a proxy in front of it) without the endpoint: read per run and key from now on.
            if (error instanceof RestError && error.status !== undefined && error.status >= 400 && error.status < 500 && error.status !== 429) this.bulk = 'no';
            else continue; // left to metrics/get-history when asked for, which reports the failure for the run
          }
        }
        for (const runId of runIds) {
          if (this.closed || window.held >= WINDOW_POINTS) return;
          try {
            const page = await this.historyPage({ runId }, key, undefined);
            // An empty page with a token (MLflow issue #23916) is left to metricHistory, which reports it.
            if (page.points.length > 0 || page.next === undefined) this.keep(window, runId, key, { points: page.points, ...(page.next !== undefined ? { next: page.next } : {}) });
          } catch {
            // read again, and reported, when asked for
          }
        }
      }
    };
    await Promise.all(Array.from({ length: WINDOW_WORKERS }, worker));
    // Size the windows opened from now on by what this one held: long histories, fewer runs at once.
    const runs = window.end - window.first;
    if (window.held >= WINDOW_POINTS) this.windowRuns = Math.max(1, Math.floor(runs / 2));
    else if (window.held < WINDOW_POINTS / 4 && runs >= this.windowRuns) this.windowRuns = Math.min(BULK_RUNS, this.windowRuns * 2);
  }

  private keep(window: HistoryWindow, runId: string, key: string, series: PrefetchedSeries): void {
    window.series.set(seriesId(runId, key), series);
    window.held += series.points.length;
  }

  /**
   * One metric's full history for several runs through get-history-bulk. The answer is ordered by run,
   * then timestamp, step, value (metrics/get-history's order) and cut at BULK_CAP points in total: when
   * it is that long, the runs before the last one in it are complete and the rest are asked again; a
   * run that alone fills the cap is left to metrics/get-history and its pages.
   */
  private async fetchBulk(window: HistoryWindow, key: string, runIds: readonly string[]): Promise<void> {
    let pending = [...runIds];
    while (pending.length > 0 && !this.closed) {
      const answer = await this.client.json('GET', BULK_PATH, { run_id: pending, metric_key: key, max_results: BULK_CAP });
      const asked = new Set(pending);
      const byRun = new Map<string, MetricPoint[]>();
      let current: MetricPoint[] | undefined;
      let currentRun: string | undefined;
      const metrics = list(answer['metrics']);
      for (const entry of metrics) {
        const runId = String(entry['run_id']);
        if (runId !== currentRun) {
          if (byRun.has(runId) || !asked.has(runId)) throw new RestError(`${BULK_PATH}: the answer is not grouped by the runs asked for`, 400, BULK_PATH);
          currentRun = runId;
          current = [];
          byRun.set(runId, current);
        }
        current!.push(metricPoint(entry, key));
      }
      this.bulk = 'yes';
      if (metrics.length < BULK_CAP) {
        for (const runId of pending) this.keep(window, runId, key, { points: byRun.get(runId) ?? [] });
        return;
      }
      const cut = currentRun!;
      byRun.delete(cut);
      for (const [runId, points] of byRun) this.keep(window, runId, key, { points });
      pending = pending.filter((runId) => !byRun.has(runId) && !(byRun.size === 0 && runId === cut));
      if (window.held >= WINDOW_POINTS) return;
    }
  }

  async *artifacts(run: RunInfo): AsyncGenerator<ArtifactFile> {
    const pending: (string | undefined)[] = [undefined];
    while (pending.length > 0) {
      const dir = pending.shift();
      let token: string | undefined;
      do {
        const page = await this.perRun(run, `artifacts/list ${dir ?? '/'}`, () =>
          this.client.json('GET', '/api/2.0/mlflow/artifacts/list', { run_id: run.runId, ...(dir !== undefined ? { path: dir } : {}), ...(token ? { page_token: token } : {}) }),
        );
        const files = list(page['files']).sort((a, b) => String(a['path']).localeCompare(String(b['path'])));
        const subdirs: string[] = [];
        for (const file of files) {
          if (file['is_dir'] === true) subdirs.push(String(file['path']));
          else yield { path: String(file['path']), size: int(file['file_size']) };
        }
        pending.unshift(...subdirs);
        token = nextToken(page, token);
      } while (token !== undefined);
    }
  }

  async localArtifactPath(run: RunInfo, artifactPath: string): Promise<string | undefined> {
    const local = run.artifactUri === null ? undefined : localPathOf(run.artifactUri);
    if (local === undefined || !path.isAbsolute(local) || !(await isDirectory(local))) return undefined;
    return path.join(local, ...artifactPath.split('/'));
  }

  async openArtifact(run: RunInfo, artifactPath: string): Promise<Readable> {
    const local = await this.localArtifactPath(run, artifactPath);
    if (local !== undefined) return createReadStream(local);
    const uri = run.artifactUri ?? '';
    const encoded = artifactPath.split('/').map(encodeURIComponent).join('/');
    const route = uri.startsWith('mlflow-artifacts:')
      ? `/api/2.0/mlflow-artifacts/artifacts/${uri.replace(/^mlflow-artifacts:\/*/, '').replace(/\/+$/, '')}/${encoded}`
      : `/get-artifact?${new URLSearchParams({ run_id: run.runId, path: artifactPath }).toString()}`;
    return this.perRun(run, `download ${artifactPath}`, () => this.client.stream(route));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.startedRuns?.listing.stop();
    this.startedRuns = undefined;
    this.startedExperiments = undefined;
    this.listed.clear();
    this.plan.length = 0;
    this.planPosition.clear();
    this.planDropped = 0;
    this.windows = [];
    this.client.close();
  }
}

/** `items` in consecutive groups of at most `size`. */
function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let from = 0; from < items.length; from += size) out.push(items.slice(from, from + size));
  return out;
}

/** What identifies a run listing: the same experiments in the same order, and the same query. */
function runsKey(experimentIds: readonly string[], query: RunQuery): string {
  const filter = query.filter !== undefined && query.filter.trim() !== '' ? query.filter : '';
  return JSON.stringify([experimentIds, query.includeDeleted, filter]);
}

/** MLflow's page token for an offset (mlflow/utils/search_utils.py: create_page_token, base64 of json.dumps). */
function offsetToken(offset: number): string {
  return Buffer.from(JSON.stringify({ offset }).replace(':', ': ')).toString('base64');
}

/** The next page token, or undefined on the last page (absent, empty, or repeating the one just used). */
function nextToken(page: Json, previous: string | undefined): string | undefined {
  const token = page['next_page_token'];
  if (typeof token !== 'string' || token === '' || token === previous) return undefined;
  return token;
}
