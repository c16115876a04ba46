// Reader for an MLflow tracking server over its REST API: experiments/search and runs/search paged
// with page tokens (max_results always sent: an omitted one means 0 to some server versions),
// params, tags, latest metrics and dataset inputs taken from the runs/search pages (runs/get only for a
// run not listed by this reader, e.g. on a resume), metrics/get-history paged (25 000 points per page, as the Python client), and
// artifacts listed with artifacts/list and downloaded through the mlflow-artifacts proxy, the local
// artifact path when this machine can see it, or /get-artifact. NaN/±Infinity arrive as the strings
// "NaN"/"Infinity"/"-Infinity"; a SQL-backed server's ±DBL_MAX is decoded to ±Infinity like the SQL reader.
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { isDirectory, localPathOf } from './local-files.js';
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
const HISTORY_PAGE = 25_000;

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

  constructor(
    readonly location: string,
    options: RestOptions = {},
  ) {
    if (options.insecureTls) {
      // Node's built-in fetch has no per-request TLS option without importing undici (not bundled
      // for import in Node 20); this process only talks to the tracking server, so turn checks off here.
      process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0';
    }
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

  async *experiments(options: { includeDeleted: boolean }): AsyncGenerator<Experiment> {
    let token: string | undefined;
    do {
      const page = await this.client.json('POST', '/api/2.0/mlflow/experiments/search', {
        max_results: SEARCH_PAGE,
        view_type: options.includeDeleted ? 'ALL' : 'ACTIVE_ONLY',
        order_by: ['experiment_id ASC'],
        ...(token !== undefined ? { page_token: token } : {}),
      });
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

  async *runs(experimentIds: readonly string[], query: RunQuery): AsyncGenerator<RunListing> {
    for (const experimentId of experimentIds) {
      let token: string | undefined;
      do {
        const page = await this.client.json('POST', '/api/2.0/mlflow/runs/search', {
          experiment_ids: [experimentId],
          run_view_type: query.includeDeleted ? 'ALL' : 'ACTIVE_ONLY',
          max_results: SEARCH_PAGE,
          order_by: ['attributes.start_time ASC'],
          ...(query.filter !== undefined && query.filter.trim() !== '' ? { filter: query.filter } : {}),
          ...(token !== undefined ? { page_token: token } : {}),
        });
        for (const run of list(page['runs'])) {
          const info = runInfo((run['info'] ?? {}) as Json);
          if (run['data'] !== undefined) this.listed.set(info.runId, runDataOf(run));
          yield { ok: true, run: info };
        }
        token = nextToken(page, token);
      } while (token !== undefined);
    }
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
    const data = await this.runData(run);
    return [...new Set(data.latestMetrics.map((metric) => metric.key))];
  }

  async *metricHistory(run: RunInfo, key: string): AsyncGenerator<MetricPoint[]> {
    let token: string | undefined;
    do {
      const page = await this.perRun(run, `metrics/get-history ${key}`, () =>
        this.client.json('GET', '/api/2.0/mlflow/metrics/get-history', {
          run_id: run.runId,
          metric_key: key,
          max_results: HISTORY_PAGE,
          ...(token !== undefined ? { page_token: token } : {}),
        }),
      );
      const points = list(page['metrics']).map((entry) => metricPoint(entry, key));
      if (points.length > 0) yield points;
      const next = nextToken(page, token);
      if (next !== undefined && points.length === 0) {
        throw new MlflowDataError(run.runId, `${this.location} metrics/get-history ${key}`, 'the server returned an empty page with a next_page_token (MLflow issue #23916); upgrade the server');
      }
      token = next;
    } while (token !== undefined);
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
    const response = await this.perRun(run, `download ${artifactPath}`, () => this.client.stream(route));
    if (response.body === null) throw new MlflowDataError(run.runId, artifactPath, 'the server sent no body');
    return Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>);
  }

  async close(): Promise<void> {
    this.listed.clear();
  }
}

/** The next page token, or undefined on the last page (absent, empty, or repeating the one just used). */
function nextToken(page: Json, previous: string | undefined): string | undefined {
  const token = page['next_page_token'];
  if (typeof token !== 'string' || token === '' || token === previous) return undefined;
  return token;
}
