// The TCP listener: /metrics and delegated routes over a real socket; tokens enforced; non-loopback refused.
import test from 'ava';
import http from 'node:http';
import { DaemonMetrics } from '../supervisor/metrics.js';
import { bearerMatches, isLoopbackAddress, parseListen, startHttpServer, type HttpServerHandle } from '../supervisor/http.js';

function get(server: HttpServerHandle, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const host = server.address.host.includes(':') ? `[${server.address.host}]` : server.address.host;
    const req = http.get(`http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${server.address.port}${path}`, { headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ route: req.url }));
};

test('without a token on loopback: /metrics and delegated routes answer', async (t) => {
  const metrics = new DaemonMetrics({ processMetrics: false });
  metrics.setLive(4);
  const server = await startHttpServer({ listen: '127.0.0.1:0', handler }, metrics);
  t.teardown(() => server.close());
  t.is(server.address.host, '127.0.0.1');
  t.true(server.address.port > 0);

  const scrape = await get(server, '/metrics');
  t.is(scrape.status, 200);
  t.regex(String(scrape.headers['content-type']), /^text\/plain/);
  t.true(scrape.body.includes('duckvisor_live_runs 4'));

  const api = await get(server, '/v1/status?x=1');
  t.is(api.status, 200);
  t.deepEqual(JSON.parse(api.body), { route: '/v1/status?x=1' });
});

test('with a token: 401 without it or with a wrong one, 200 with it', async (t) => {
  const server = await startHttpServer({ listen: '127.0.0.1:0', token: 'correct-horse', handler }, new DaemonMetrics({ processMetrics: false }));
  t.teardown(() => server.close());

  const none = await get(server, '/metrics');
  t.is(none.status, 401);
  t.is(none.headers['www-authenticate'], 'Bearer realm="duckvisor"');
  t.false(none.body.includes('duckvisor_'));
  t.is((await get(server, '/v1/status')).status, 401);
  t.is((await get(server, '/metrics', { authorization: 'Bearer correct-hors' })).status, 401);
  t.is((await get(server, '/metrics', { authorization: 'Basic correct-horse' })).status, 401);
  t.is((await get(server, '/metrics', { authorization: 'Bearer correct-horse' })).status, 200);
  t.is((await get(server, '/v1/status', { authorization: 'bearer correct-horse' })).status, 200);
});

test('a non-loopback bind is refused without a token, allowed with one', async (t) => {
  await t.throwsAsync(startHttpServer({ listen: '0.0.0.0:0', handler }), { message: /control\.http: refusing to listen on 0\.0\.0\.0:0 .*without control\.http_token/ });
  await t.throwsAsync(startHttpServer({ listen: '[::]:0', handler }), { message: /refusing/ });
  const server = await startHttpServer({ listen: '0.0.0.0:0', token: 't0k3n', handler });
  t.teardown(() => server.close());
  t.is(server.address.host, '0.0.0.0');
  t.is((await get(server, '/x')).status, 401);
  t.is((await get(server, '/x', { authorization: 'Bearer t0k3n' })).status, 200);
});

test('bad listen values, empty tokens and busy ports give errors naming the setting', async (t) => {
  await t.throwsAsync(startHttpServer({ listen: '9477', handler }), { message: /control\.http: "9477" is not host:port/ });
  await t.throwsAsync(startHttpServer({ listen: '127.0.0.1:99999', handler }), { message: /is not host:port/ });
  await t.throwsAsync(startHttpServer({ listen: '127.0.0.1:0', token: ' ', handler }), { message: /control\.http_token: must not be empty/ });
  const first = await startHttpServer({ listen: '127.0.0.1:0', handler });
  t.teardown(() => first.close());
  await t.throwsAsync(startHttpServer({ listen: `127.0.0.1:${first.address.port}`, handler }), { message: /address already in use/ });
});

test('a handler that throws gives a 500, and the server keeps serving', async (t) => {
  const server = await startHttpServer({
    listen: 'localhost:0',
    handler: (req) => {
      throw new Error(`no route ${req.url}`);
    },
  });
  t.teardown(() => server.close());
  const failed = await get(server, '/nope');
  t.is(failed.status, 500);
  t.regex(failed.body, /no route \/nope/);
  t.is((await get(server, '/again')).status, 500);
});

test('address helpers', (t) => {
  t.deepEqual(parseListen('[::1]:9477'), { host: '::1', port: 9477 });
  t.deepEqual(parseListen('localhost:80'), { host: 'localhost', port: 80 });
  t.true(isLoopbackAddress('127.0.0.1'));
  t.true(isLoopbackAddress('127.8.9.10'));
  t.true(isLoopbackAddress('::1'));
  t.true(isLoopbackAddress('::ffff:127.0.0.1'));
  t.false(isLoopbackAddress('0.0.0.0'));
  t.false(isLoopbackAddress('::'));
  t.false(isLoopbackAddress('10.0.0.1'));
  t.true(bearerMatches('Bearer abc', 'abc'));
  t.false(bearerMatches(undefined, 'abc'));
  t.false(bearerMatches('Bearer abcd', 'abc'));
});
