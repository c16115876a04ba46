// Environment an extractor child (an SDK process: built-in or a user's module) is started with.
//
// glibc gives each allocating thread its own malloc arena (up to 8 per core), and DuckDB's worker
// threads keep filling theirs as a run writes more rows: a child's RSS then grows with the size of the
// store (10× seed store, mlflow-metric-history: 159–166 MiB by default, 143–152 MiB with two arenas).
// glibc reads MALLOC_ARENA_MAX once at process start, so the SDK cannot set it for itself: whoever
// spawns the child does. A value the operator set (job env or the daemon's own) wins.
//
// Node reads and parses every certificate in NODE_EXTRA_CA_CERTS before it runs any code: with a
// system bundle there (/etc/ssl/certs/ca-certificates.crt, ~140 certificates) `node -e 1` takes
// 0.21 s instead of 0.06 s. A built-in extractor only needs them for an https tracking server, so it
// gets the path under DUCKVISOR_EXTRA_CA_CERTS and its REST client loads them when it connects
// (rest-client.ts). A user's module keeps NODE_EXTRA_CA_CERTS: it may make https calls of its own.
import { builtinExtractors } from '../registry.js';

/** Where a built-in extractor finds the certificates of NODE_EXTRA_CA_CERTS (read by the REST client). */
export const EXTRA_CA_CERTS_ENV = 'DUCKVISOR_EXTRA_CA_CERTS';

/** The whole environment of an extractor child from the environment it would otherwise get (`extractor`: a built-in name or a module path). */
export function extractorProcessEnv(inherited: Readonly<Record<string, string | undefined>>, extractor: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(inherited)) if (value !== undefined) env[key] = value;
  env['MALLOC_ARENA_MAX'] ??= '2';
  const extraCertificates = env['NODE_EXTRA_CA_CERTS'];
  if (Object.hasOwn(builtinExtractors, extractor) && extraCertificates !== undefined && extraCertificates !== '') {
    delete env['NODE_EXTRA_CA_CERTS'];
    env[EXTRA_CA_CERTS_ENV] ??= extraCertificates;
  }
  return env;
}
