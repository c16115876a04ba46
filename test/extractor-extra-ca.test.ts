// NODE_EXTRA_CA_CERTS for built-in extractors (extractors/sdk/process-env.ts): the child starts without
// it (Node would parse every certificate in it before running any code) and the REST client loads the
// same file when it connects to an https tracking server. A user's module keeps the variable. Driven
// end to end: openssl makes a throwaway CA and a server certificate, an https server plays the tracking
// server, and mlflow-runs runs as the daemon starts it.
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { childEnv } from '../extractors/sdk/child-env.js';
import { EXTRA_CA_CERTS_ENV, extractorProcessEnv } from '../extractors/sdk/process-env.js';
import { runExtractorJs, tempDir } from './sdk-harness.js';

/** A CA and a certificate for 127.0.0.1 signed by it, in `dir`. */
async function makeCertificates(dir: string): Promise<{ ca: string; key: string; cert: string }> {
  const file = (name: string): string => path.join(dir, name);
  await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '1', '-subj', '/CN=duckvisor test CA']);
  await execa('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1']);
  writeFileSync(file('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  await execa('openssl', ['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file('server.pem'), '-days', '1', '-extfile', file('san.ext')]);
  return { ca: file('ca.pem'), key: file('server.key'), cert: file('server.pem') };
}

/** An https tracking server with one experiment and one run (what mlflow-runs asks for). */
async function trackingServer(key: string, cert: string): Promise<{ base: string; close: () => void; requests: string[] }> {
  const requests: string[] = [];
  const server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (request, response) => {
    requests.push(request.url ?? '');
    const json = (body: unknown): void => void response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const url = request.url ?? '';
    if (url.includes('experiments/search')) {
      return json({ experiments: [{ experiment_id: '1', name: 'tls', artifact_location: '/tmp/none', lifecycle_stage: 'active', creation_time: 1, last_update_time: 1 }] });
    }
    if (url.includes('runs/search')) {
      return json({
        runs: [{
          info: { run_id: 'a'.repeat(32), run_uuid: 'a'.repeat(32), experiment_id: '1', run_name: 'r', user_id: 'u', status: 'FINISHED', start_time: 1, end_time: 2, artifact_uri: '/tmp/none', lifecycle_stage: 'active' },
          data: { params: [{ key: 'p', value: 'v' }], tags: [], metrics: [{ key: 'm', value: 0.5, timestamp: 1, step: 0 }] },
        }],
      });
    }
    if (url.includes('server-info')) return json({});
    response.writeHead(404).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

test('a built-in extractor starts without NODE_EXTRA_CA_CERTS and gets its path instead; a module extractor keeps it', (t) => {
  const inherited = { PATH: '/usr/bin', NODE_EXTRA_CA_CERTS: '/etc/corp/ca.pem' };
  const builtin = extractorProcessEnv(inherited, 'mlflow-runs');
  t.false('NODE_EXTRA_CA_CERTS' in builtin);
  t.is(builtin[EXTRA_CA_CERTS_ENV], '/etc/corp/ca.pem');
  t.is(builtin['MALLOC_ARENA_MAX'], '2');
  t.is(builtin['PATH'], '/usr/bin');
  const module = extractorProcessEnv(inherited, '/home/me/my-extractor.mjs');
  t.is(module['NODE_EXTRA_CA_CERTS'], '/etc/corp/ca.pem');
  t.false(EXTRA_CA_CERTS_ENV in module);
  t.is(extractorProcessEnv({ MALLOC_ARENA_MAX: '4' }, 'mlflow-runs')['MALLOC_ARENA_MAX'], '4', "the operator's value wins");
});

test('mlflow-runs reads an https tracking server whose certificate only the NODE_EXTRA_CA_CERTS authority signed', async (t) => {
  const dir = tempDir(t);
  const { ca, key, cert } = await makeCertificates(dir);
  const server = await trackingServer(key, cert);
  t.teardown(server.close);
  const run = async (inherited: Record<string, string | undefined>, staging: string) => {
    const env: Record<string, string> = {
      ...extractorProcessEnv(inherited, 'mlflow-runs'),
      [childEnv.staging]: path.join(dir, staging), [childEnv.options]: JSON.stringify({ source: server.base }), [childEnv.heartbeatTimeout]: '30000',
      [childEnv.runId]: staging, [childEnv.job]: 'mlflow-runs', [childEnv.attempt]: '1', [childEnv.protocol]: '1',
      MLFLOW_HTTP_REQUEST_MAX_RETRIES: '0',
    };
    t.false('NODE_EXTRA_CA_CERTS' in env, 'the child does not get the variable Node would load at start');
    return execa(process.execPath, [runExtractorJs, 'mlflow-runs'], { env, extendEnv: false, reject: false, timeout: 60_000 });
  };
  const { NODE_EXTRA_CA_CERTS: _ignored, ...base } = process.env;

  const trusted = await run({ ...base, NODE_EXTRA_CA_CERTS: ca }, 'trusted.duckdb');
  t.is(trusted.exitCode, 0, trusted.stderr);
  t.regex(trusted.stderr, /1 run\(s\)/, 'the run was listed through TLS');
  t.true(server.requests.some((url) => url.includes('runs/search')));

  const untrusted = await run(base, 'untrusted.duckdb');
  t.not(untrusted.exitCode, 0, 'without the authority the server is not trusted');
  t.regex(untrusted.stderr, /certificate/i);

  const missing = await run({ ...base, NODE_EXTRA_CA_CERTS: path.join(dir, 'no-such.pem') }, 'missing.duckdb');
  t.not(missing.exitCode, 0);
  t.regex(missing.stderr, /DUCKVISOR_EXTRA_CA_CERTS \(from NODE_EXTRA_CA_CERTS\): cannot read .*no-such\.pem/);
});
