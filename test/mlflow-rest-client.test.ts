// The tracking-server HTTP client: a server that does not answer in time is retried and then named with
// the timeout, requests in flight stay within the limit, and the bare NaN/Infinity tokens of Flask JSON
// are read as the strings protobuf JSON uses (and left alone inside strings).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { parseLenientJson, RestClient } from '../extractors/mlflow/rest-client.js';

async function listen(handler: http.RequestListener): Promise<{ base: string; server: http.Server }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

test('a server that does not answer in time is retried, then reported with the timeout', async (t) => {
  let calls = 0;
  const { base, server } = await listen(() => {
    calls++; // never answers
  });
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const client = new RestClient(base, { timeoutMs: 150, attempts: 2, backoffMs: 5 });
  await t.throwsAsync(() => client.json('GET', '/api/2.0/mlflow/experiments/search', { max_results: 1 }), { message: /failed after 2 attempts; last: no answer within 150 ms/ });
  t.is(calls, 2);
  client.close();
});

test('requests in flight stay within maxInFlight', async (t) => {
  let active = 0;
  let peak = 0;
  const { base, server } = await listen((_request, response) => {
    active++;
    peak = Math.max(peak, active);
    setTimeout(() => {
      active--;
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"ok": true}');
    }, 20);
  });
  t.teardown(() => server.close());
  const client = new RestClient(base, { maxInFlight: 3 });
  const answers = await Promise.all(Array.from({ length: 12 }, () => client.json('GET', '/x')));
  client.close();
  t.is(answers.length, 12);
  t.is(peak, 3);
});

test('bare NaN and Infinity tokens are read as strings, not inside strings', (t) => {
  t.deepEqual(parseLenientJson('{"a": NaN, "b": [Infinity, -Infinity, 1.5e-7], "c": "NaN, Infinity \\" -Infinity"}'), {
    a: 'NaN',
    b: ['Infinity', '-Infinity', 1.5e-7],
    c: 'NaN, Infinity " -Infinity',
  });
  t.throws(() => parseLenientJson('{"a": nan}'));
});
