// The tracking-server reader's parallel paths against a local HTTP server that behaves like MLflow's
// handlers (server-info, offset page tokens, start_time ordering with run id ties and runs without
// start_time last, get-history pages, get-history-bulk cut at 25 000 points in total with bare NaN
// tokens): a long listing read in parallel pages gives every run once, in the order of one sequential
// listing, and only where the server is SQL-backed and its tokens are MLflow's; prefetched history
// equals metrics/get-history point for point, also when bulk answers are capped or the endpoint is absent.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { RestReader } from '../extractors/mlflow/rest-store.js';
import type { RunInfo } from '../extractors/mlflow/types.js';

interface FakeRun {
  id: string;
  start: number | null;
  keys: string[];
  /** Its experiment's id ('1' when unset). */
  experiment?: string;
}

interface FakePoint {
  step: number;
  timestamp: number;
  value: number;
}

interface FakeServer {
  base: string;
  /** Every request: route, and its max_results (undefined when missing). */
  calls: { route: string; maxResults: string | undefined; filter?: string; firstPage?: boolean; experimentIds?: string[] }[];
  /** The most searches the server had in progress at once. */
  peakSearches: number;
  close: () => Promise<void>;
}

const BULK_CAP = 25_000;

/** MLflow's token: base64 of Python's json.dumps({"offset": N}). */
function token(offset: number): string {
  return Buffer.from(`{"offset": ${offset}}`).toString('base64');
}

function offsetOf(pageToken: string | null | undefined): number {
  if (!pageToken) return 0;
  const text = Buffer.from(pageToken, 'base64').toString();
  return text.startsWith('page:') ? Number(text.slice(5)) : (JSON.parse(text) as { offset: number }).offset;
}

/** The history of a run's metric, made up from its name (NaN every 7th point of 'loss'). */
function historyOf(runs: Map<string, FakeRun>, lengths: Map<string, number>, runId: string, key: string): FakePoint[] {
  if (!runs.get(runId)?.keys.includes(key)) return [];
  const length = lengths.get(`${runId}/${key}`) ?? 3;
  return Array.from({ length }, (_, step) => ({ step, timestamp: 1_700_000_000_000 + step * 10, value: key === 'loss' && step % 7 === 3 ? NaN : step / 3 + runId.charCodeAt(0) }));
}

function protoValue(value: number): number | string {
  return Number.isNaN(value) ? 'NaN' : value;
}

interface FakeOptions {
  lengths?: Map<string, number>;
  bulk?: boolean;
  searchDelayMs?: number;
  /** server-info's store_type; undefined: no server-info route (an older server). */
  storeType?: string | undefined;
  /** Page tokens in another format than MLflow's. */
  otherTokens?: boolean;
  /** Experiment ids experiments/search lists (['1'] when unset). */
  experiments?: string[];
}

async function fakeServer(runList: FakeRun[], options: FakeOptions = { storeType: 'SqlStore' }): Promise<FakeServer> {
  const runs = new Map(runList.map((run) => [run.id, run]));
  const lengths = options.lengths ?? new Map<string, number>();
  const calls: FakeServer['calls'] = [];
  let searching = 0;
  const state = { peakSearches: 0 };
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', async () => {
      response.setHeader('content-type', 'application/json');
      if (url.pathname === '/api/3.0/mlflow/server-info' && options.storeType !== undefined) {
        calls.push({ route: url.pathname, maxResults: undefined });
        response.end(JSON.stringify({ store_type: options.storeType, workspaces_enabled: false }));
        return;
      }
      if (url.pathname === '/api/2.0/mlflow/experiments/search') {
        calls.push({ route: url.pathname, maxResults: undefined });
        const ids = options.experiments ?? ['1'];
        response.end(JSON.stringify({ experiments: ids.map((id) => ({ experiment_id: id, name: id === '1' ? 'one' : `experiment ${id}`, lifecycle_stage: 'active' })) }));
        return;
      }
      if (url.pathname === '/api/2.0/mlflow/runs/search') {
        const query = JSON.parse(body) as { experiment_ids?: string[]; max_results?: number; order_by?: string[]; filter?: string; page_token?: string };
        const experimentIds = query.experiment_ids ?? [];
        calls.push({
          route: url.pathname,
          maxResults: query.max_results === undefined ? undefined : String(query.max_results),
          ...(query.filter !== undefined ? { filter: query.filter } : {}),
          firstPage: query.page_token === undefined,
          experimentIds,
        });
        searching++;
        state.peakSearches = Math.max(state.peakSearches, searching);
        await new Promise((resolve) => setTimeout(resolve, options.searchDelayMs ?? 20));
        searching--;
        if ((query.order_by ?? [])[0] !== 'attributes.start_time ASC') throw new Error(`unexpected order_by ${JSON.stringify(query.order_by)}`);
        // MLflow's SQL store: runs without start_time last, ties by run id.
        const found = [...runs.values()].filter((run) => experimentIds.includes(run.experiment ?? '1')).sort((a, b) => {
          if (a.start === null || b.start === null) return (a.start === null ? 1 : 0) - (b.start === null ? 1 : 0) || a.id.localeCompare(b.id);
          return a.start - b.start || a.id.localeCompare(b.id);
        });
        const offset = offsetOf(query.page_token);
        const max = query.max_results ?? 1000;
        const page = found.slice(offset, offset + max);
        response.end(JSON.stringify({
          runs: page.map((run) => ({
            info: { run_id: run.id, experiment_id: run.experiment ?? '1', status: 'FINISHED', ...(run.start !== null ? { start_time: run.start } : {}), lifecycle_stage: 'active' },
            data: { metrics: run.keys.map((key) => ({ key, value: 1, timestamp: 1, step: (lengths.get(`${run.id}/${key}`) ?? 3) - 1 })) },
          })),
          ...(offset + max < found.length ? { next_page_token: options.otherTokens ? Buffer.from(`page:${offset + max}`).toString('base64') : token(offset + max) } : {}),
        }));
        return;
      }
      if (url.pathname === '/api/2.0/mlflow/metrics/get-history') {
        calls.push({ route: url.pathname, maxResults: url.searchParams.get('max_results') ?? undefined });
        const all = historyOf(runs, lengths, url.searchParams.get('run_id')!, url.searchParams.get('metric_key')!);
        const offset = offsetOf(url.searchParams.get('page_token'));
        const max = Number(url.searchParams.get('max_results'));
        response.end(JSON.stringify({
          metrics: all.slice(offset, offset + max).map((point) => ({ key: url.searchParams.get('metric_key'), ...point, value: protoValue(point.value) })),
          ...(offset + max < all.length ? { next_page_token: token(offset + max) } : {}),
        }));
        return;
      }
      if (url.pathname === '/ajax-api/2.0/mlflow/metrics/get-history-bulk' && options.bulk !== false) {
        calls.push({ route: url.pathname, maxResults: url.searchParams.get('max_results') ?? undefined });
        const key = url.searchParams.get('metric_key')!;
        const ids = url.searchParams.getAll('run_id');
        if (ids.length > 100) {
          response.statusCode = 400;
          response.end(JSON.stringify({ error_code: 'INVALID_PARAMETER_VALUE', message: 'more than 100 run_ids' }));
          return;
        }
        const rows = [...ids].sort().flatMap((id) => historyOf(runs, lengths, id, key).map((point) => ({ key, ...point, run_id: id })));
        const cut = rows.slice(0, Math.min(Number(url.searchParams.get('max_results')), BULK_CAP));
        // Plain Flask JSON: NaN as a bare token.
        response.end(`{"metrics": [${cut.map((row) => JSON.stringify({ ...row, value: Number.isNaN(row.value) ? '__NaN__' : row.value }).replace('"__NaN__"', 'NaN')).join(', ')}]}`);
        return;
      }
      calls.push({ route: url.pathname, maxResults: undefined });
      response.statusCode = 404;
      response.end(JSON.stringify({ error_code: 'ENDPOINT_NOT_FOUND', message: `no ${url.pathname}` }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    get peakSearches() {
      return state.peakSearches;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function runId(index: number): string {
  return index.toString(16).padStart(32, '0');
}

/** The order one sequential listing by start_time ascending gives (ties by run id). */
function sequentialOrder(runs: FakeRun[]): string[] {
  return runs
    .filter((run) => run.start !== null)
    .sort((a, b) => a.start! - b.start! || a.id.localeCompare(b.id))
    .map((run) => run.id)
    .concat(runs.filter((run) => run.start === null).map((run) => run.id).sort());
}

async function listAll(reader: RestReader): Promise<RunInfo[]> {
  const listed: RunInfo[] = [];
  for await (const listing of reader.runs(['1'], { includeDeleted: false })) if (listing.ok) listed.push(listing.run);
  return listed;
}

test('on a SQL-backed server a long listing is read in parallel pages: every run once, in sequential order', async (t) => {
  // 450 runs, uneven start times, a crowd of equal start times across page ends, and runs without start_time (last).
  const runs: FakeRun[] = Array.from({ length: 450 }, (_, index) => ({
    id: runId((index * 7919) % 450),
    start: index % 97 === 5 ? null : index >= 95 && index < 230 ? 1_000_000 + 95 * 1000 : 1_000_000 + index * 1000 + (index % 3) * 17,
    keys: [],
  }));
  const server = await fakeServer(runs);
  t.teardown(server.close);
  const reader = new RestReader(server.base, { attempts: 1 });
  const listed = await listAll(reader);
  await reader.close();
  t.deepEqual(listed.map((run) => run.runId), sequentialOrder(runs));
  t.true(server.calls.filter((call) => call.route.endsWith('/runs/search')).every((call) => call.maxResults !== undefined), 'max_results is always sent');
  t.true(server.peakSearches > 1, 'pages were requested at once');
});

test('a long listing on a SQL-backed server asks for pages of at most 200 runs, so what its pages hold does not grow with the store', async (t) => {
  const runs: FakeRun[] = Array.from({ length: 3000 }, (_, index) => ({ id: runId(index), start: 1_000_000 + index * 1000, keys: [] }));
  const server = await fakeServer(runs);
  t.teardown(server.close);
  const reader = new RestReader(server.base, { attempts: 1 });
  const listed = await listAll(reader);
  await reader.close();
  t.is(listed.length, 3000);
  const sizes = server.calls.filter((call) => call.route.endsWith('/runs/search')).map((call) => Number(call.maxResults));
  t.true(sizes.length > 3000 / 200, `${sizes.length} requests`);
  t.is(Math.max(...sizes), 200, `page sizes asked: ${[...new Set(sizes)].join(', ')}`);
});

test('on a SQL-backed server the chosen experiments are listed together in one listing; elsewhere one experiment at a time', async (t) => {
  // An empty experiment, a short one and a long one, their start times interleaved.
  const runs: FakeRun[] = Array.from({ length: 446 }, (_, index) => ({ id: runId(index), start: 30_000 + ((index * 37) % 446), keys: [], experiment: index % 12 === 0 ? '7' : '3' }));
  const experiments = ['3', '5', '7'];
  for (const storeType of ['SqlStore', 'FileStore']) {
    const server = await fakeServer(runs, { storeType, experiments, searchDelayMs: 1 });
    const reader = new RestReader(server.base, { attempts: 1 });
    const listed: RunInfo[] = [];
    for await (const listing of reader.runs(experiments, { includeDeleted: false })) if (listing.ok) listed.push(listing.run);
    await reader.close();
    await server.close();
    const searches = server.calls.filter((call) => call.route.endsWith('/runs/search'));
    const asked = new Set(searches.map((call) => call.experimentIds!.join(',')));
    if (storeType === 'SqlStore') {
      // One listing over all three, in the order of one sequential listing of them together.
      t.deepEqual(listed.map((run) => run.runId), sequentialOrder(runs));
      t.deepEqual([...asked], ['3,5,7']);
      t.true(searches.length <= Math.ceil(446 / 100) + 3, `${searches.length} runs/search requests`);
    } else {
      // Experiment after experiment, each in its own order.
      t.deepEqual(listed.map((run) => run.runId), ['3', '7'].flatMap((id) => sequentialOrder(runs.filter((run) => run.experiment === id))));
      t.deepEqual([...asked].sort(), ['3', '5', '7']);
    }
    t.deepEqual([...new Set(listed.map((run) => run.experimentId))].sort(), ['3', '7']);
  }
});

for (const [what, options] of [
  ['a server that is not SQL-backed', { storeType: 'FileStore' }],
  ['a server without server-info', { storeType: undefined }],
  ['a server whose page tokens are not offset tokens', { storeType: 'SqlStore', otherTokens: true }],
] as const) {
  test(`${what} is listed page after page with its own tokens`, async (t) => {
    const runs: FakeRun[] = Array.from({ length: 2345 }, (_, index) => ({ id: runId(index), start: 5_000 + (index % 1000), keys: [] }));
    const server = await fakeServer(runs, { ...options, searchDelayMs: 1 });
    t.teardown(server.close);
    const reader = new RestReader(server.base, { attempts: 1 });
    const listed = await listAll(reader);
    await reader.close();
    t.deepEqual(listed.map((run) => run.runId), sequentialOrder(runs));
    // A SQL-backed server may get one offset page together with the first page (before its token shows what its tokens are).
    if (options.storeType === 'SqlStore') t.true(server.peakSearches <= 2, `${server.peakSearches} searches at once`);
    else t.is(server.peakSearches, 1);
    t.true(server.calls.filter((call) => call.route.endsWith('/runs/search')).every((call) => call.maxResults !== undefined));
  });
}

/** Every metric history of every listed run as the reader gives it, and as the server holds it. */
async function histories(server: FakeServer, runs: FakeRun[], lengths: Map<string, number>): Promise<{ got: string[]; want: string[] }> {
  const reader = new RestReader(server.base, { attempts: 1 });
  const got: string[] = [];
  const want: string[] = [];
  const byId = new Map(runs.map((run) => [run.id, run]));
  for (const run of await listAll(reader)) {
    for (const key of await reader.metricKeys(run)) {
      for await (const batch of reader.metricHistory(run, key)) for (const point of batch) got.push(JSON.stringify([run.runId, key, point.step, point.timestamp, String(point.value)]));
      for (const point of historyOf(byId, lengths, run.runId, key)) want.push(JSON.stringify([run.runId, key, point.step, point.timestamp, String(point.value)]));
    }
  }
  await reader.close();
  return { got, want };
}

test('prefetched history equals get-history point for point, with capped bulk answers re-asked', async (t) => {
  const runs: FakeRun[] = Array.from({ length: 240 }, (_, index) => ({ id: runId(index), start: 10_000 + index, keys: index % 5 === 0 ? ['loss'] : ['loss', 'acc', 'f1'] }));
  const lengths = new Map<string, number>();
  // Runs whose 'loss' histories together pass the bulk cap, and one that alone passes it (paged get-history).
  for (const index of [3, 4, 6, 7]) lengths.set(`${runId(index)}/loss`, 9_000);
  lengths.set(`${runId(12)}/loss`, 30_000);
  const server = await fakeServer(runs, { lengths });
  t.teardown(server.close);
  const { got, want } = await histories(server, runs, lengths);
  t.is(got.length, want.length);
  t.deepEqual(got, want);
  const bulkCalls = server.calls.filter((call) => call.route.endsWith('get-history-bulk')).length;
  const historyCalls = server.calls.filter((call) => call.route.endsWith('/get-history')).length;
  t.true(bulkCalls > 0 && bulkCalls < 40, `${bulkCalls} bulk requests`);
  t.is(historyCalls, 2, 'only the run past the cap is read with get-history (two pages)');
  t.true(server.calls.filter((call) => !call.route.endsWith('/server-info')).every((call) => call.maxResults !== undefined), 'max_results is always sent');
});

test('without get-history-bulk the history is read per run and key, the same points', async (t) => {
  const runs: FakeRun[] = Array.from({ length: 60 }, (_, index) => ({ id: runId(index), start: 10_000 + index, keys: ['loss', 'acc'] }));
  const lengths = new Map([[`${runId(2)}/loss`, 26_000]]);
  const server = await fakeServer(runs, { lengths, bulk: false });
  t.teardown(server.close);
  const { got, want } = await histories(server, runs, lengths);
  t.deepEqual(got, want);
  t.is(server.calls.filter((call) => call.route.endsWith('get-history-bulk')).length, 1, 'asked once, then no more');
  t.is(server.calls.filter((call) => call.route.endsWith('/get-history')).length, 121);
});

test('a window stops prefetching at its points budget; the rest is read per run and key, the same points', async (t) => {
  const runs: FakeRun[] = Array.from({ length: 150 }, (_, index) => ({ id: runId(index), start: 10_000 + index, keys: ['loss'] }));
  const lengths = new Map(runs.map((run) => [`${run.id}/loss`, 1_500]));
  const server = await fakeServer(runs, { lengths, storeType: 'SqlStore' });
  t.teardown(server.close);
  const { got, want } = await histories(server, runs, lengths);
  t.is(got.length, 150 * 1_500);
  t.deepEqual(got, want);
  t.true(server.calls.some((call) => call.route.endsWith('/get-history')), 'runs past the budget were read with get-history');
});

/** Resolves once `condition` holds (polled). */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

test('a selection started early (startSelection) is what experiments() and runs() hand out when asked for the same; another query is listed anew', async (t) => {
  const runs: FakeRun[] = Array.from({ length: 250 }, (_, index) => ({ id: runId(index), start: 20_000 + (index % 40), keys: [] }));
  const server = await fakeServer(runs);
  t.teardown(server.close);
  const searches = (): FakeServer['calls'] => server.calls.filter((call) => call.route.endsWith('/runs/search'));

  const reader = new RestReader(server.base, { attempts: 1 });
  reader.startSelection({ includeDeleted: false, experiments: ['one'] });
  await until(() => searches().length > 1);
  const experiments: string[] = [];
  for await (const experiment of reader.experiments({ includeDeleted: false })) experiments.push(experiment.experimentId);
  t.deepEqual(experiments, ['1']);
  t.deepEqual((await listAll(reader)).map((run) => run.runId), sequentialOrder(runs));
  await reader.close();
  t.is(server.calls.filter((call) => call.route.endsWith('/experiments/search')).length, 1, 'the experiments were listed once');
  t.is(searches().filter((call) => call.firstPage).length, 1, 'the runs were listed once');

  // Another query than the started one: the started listing is left, the asked one is listed.
  server.calls.length = 0;
  const other = new RestReader(server.base, { attempts: 1 });
  other.startSelection({ includeDeleted: true });
  let count = 0;
  for await (const experiment of other.experiments({ includeDeleted: false })) count += experiment.experimentId === '1' ? 1 : 0;
  t.is(count, 1);
  const listed: string[] = [];
  for await (const listing of other.runs(['1'], { includeDeleted: false, filter: "attributes.status = 'FINISHED'" })) if (listing.ok) listed.push(listing.run.runId);
  await other.close();
  t.deepEqual(listed, sequentialOrder(runs));
  t.is(server.calls.filter((call) => call.route.endsWith('/experiments/search')).length, 2, 'experiments asked for without deleted ones were listed anew');
  t.true(searches().some((call) => call.firstPage && call.filter === "attributes.status = 'FINISHED'"), 'the filtered listing was requested');
});

test('the history prefetch drops the plan of runs behind its windows, so what it holds does not grow with the store', async (t) => {
  const runs: FakeRun[] = Array.from({ length: 600 }, (_, index) => ({ id: runId(index), start: 10_000 + index, keys: index % 2 === 0 ? ['loss'] : ['loss', 'acc'] }));
  const lengths = new Map<string, number>();
  const server = await fakeServer(runs, { lengths });
  t.teardown(server.close);
  const reader = new RestReader(server.base, { attempts: 1 });
  const byId = new Map(runs.map((run) => [run.id, run]));
  const listed = await listAll(reader);
  t.is(reader.plannedRuns, 0, 'nothing is planned before history is asked for');
  await reader.metricKeys(listed[0]!);
  t.is(reader.plannedRuns, 600, 'every listed run not read yet is planned at the first history call');
  let most = 0;
  let points = 0;
  for (const [index, run] of listed.entries()) {
    for (const key of await reader.metricKeys(run)) {
      const got: string[] = [];
      for await (const batch of reader.metricHistory(run, key)) for (const point of batch) got.push(`${point.step}/${point.value}`);
      t.deepEqual(got, historyOf(byId, lengths, run.runId, key).map((point) => `${point.step}/${point.value}`));
      points += got.length;
    }
    if (index >= 300) most = Math.max(most, reader.plannedRuns);
  }
  await reader.close();
  t.is(points, 600 * 3 + 300 * 3);
  t.true(most <= 300, `at most the runs from the current window on are held in the second half (${most})`);
  t.true(server.calls.filter((call) => call.route.endsWith('/get-history')).length === 0, 'all history came from the prefetch');
});

test('a consumer that reads run data but never history (mlflow-runs) keeps no plan, however many runs it lists', async (t) => {
  const runs: FakeRun[] = Array.from({ length: 3000 }, (_, index) => ({ id: runId(index), start: 10_000 + index, keys: ['loss', 'acc'] }));
  const server = await fakeServer(runs);
  t.teardown(server.close);
  const reader = new RestReader(server.base, { attempts: 1 });
  let read = 0;
  let most = 0;
  for await (const listing of reader.runs(['1'], { includeDeleted: false })) {
    if (!listing.ok) continue;
    const data = await reader.runData(listing.run);
    t.deepEqual(data.latestMetrics.map((metric) => metric.key).sort(), ['acc', 'loss']);
    read++;
    most = Math.max(most, reader.plannedRuns);
  }
  await reader.close();
  t.is(read, 3000);
  t.is(most, 0, `runs planned for a history prefetch nobody asked for: ${most}`);
});
