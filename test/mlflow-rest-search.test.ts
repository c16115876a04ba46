// The tracking-server reader takes params, tags, latest metrics and inputs from the runs/search pages
// it already fetched: a local HTTP server that answers runs/get with 500 proves no per-run runs/get is
// made for listed runs, and that a run the reader did not list still falls back to runs/get.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { RestReader } from '../extractors/mlflow/rest-store.js';

function searchRun(id: string): Record<string, unknown> {
  return {
    info: { run_id: id, experiment_id: '1', status: 'FINISHED', start_time: '1700000000000', lifecycle_stage: 'active', artifact_uri: `file:///nowhere/${id}` },
    data: {
      params: [{ key: 'lr', value: '0.1' }],
      tags: [{ key: 'mlflow.runName', value: `name-${id}` }],
      metrics: [{ key: 'loss', value: 'NaN', timestamp: '1700000000001', step: '3' }, { key: 'auc', value: 0.9, timestamp: '1700000000002', step: '0' }],
    },
    inputs: { dataset_inputs: [{ dataset: { name: 'train', digest: 'abc', source_type: 'local', source: '/d' }, tags: [{ key: 'mlflow.data.context', value: 'training' }] }] },
  };
}

test('runData and metricKeys come from the runs/search pages; runs/get only for a run not listed', async (t) => {
  const calls: string[] = [];
  const server = http.createServer((request, response) => {
    const route = (request.url ?? '').split('?')[0]!;
    calls.push(route);
    response.setHeader('content-type', 'application/json');
    if (route.endsWith('/runs/search')) response.end(JSON.stringify({ runs: ['r1', 'r2', 'r3'].map((id) => searchRun(id.padEnd(32, '0'))) }));
    else if (route.endsWith('/runs/get') && (request.url ?? '').includes('r9')) response.end(JSON.stringify({ run: searchRun('r9'.padEnd(32, '0')) }));
    else {
      response.statusCode = 400;
      response.end(JSON.stringify({ error_code: 'BAD_REQUEST', message: `unexpected ${route}` }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const reader = new RestReader(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { attempts: 1 });
  const runs = [];
  for await (const listing of reader.runs(['1'], { includeDeleted: false })) if (listing.ok) runs.push(listing.run);
  t.is(runs.length, 3);
  const data = await reader.runData(runs[0]!);
  t.deepEqual(data.params, [{ key: 'lr', value: '0.1' }]);
  t.deepEqual(data.tags, [{ key: 'mlflow.runName', value: `name-${runs[0]!.runId}` }]);
  t.deepEqual(data.latestMetrics.map((m) => [m.key, m.step, m.value]), [['loss', 3, NaN], ['auc', 0, 0.9]]);
  t.deepEqual(data.inputs, [{ name: 'train', digest: 'abc', sourceType: 'local', source: '/d', context: 'training' }]);
  t.deepEqual(await reader.metricKeys(runs[1]!), ['loss', 'auc']);
  t.deepEqual(calls.filter((c) => c.endsWith('/runs/get')), [], 'no runs/get for listed runs');
  const unlisted = { ...runs[2]!, runId: 'r9'.padEnd(32, '0') };
  t.deepEqual((await reader.runData(unlisted)).params, [{ key: 'lr', value: '0.1' }]);
  t.deepEqual(calls.filter((c) => c.endsWith('/runs/get')), ['/api/2.0/mlflow/runs/get']);
  await reader.close();
});
