// duckvisor.yaml loading: every malformed file is rejected with its line and field path; good files
// resolve to the documented defaults, merged overrides and absolute paths.

import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, diffConfigs, loadConfig, resolveConfigPath, systemConfigPath } from '../supervisor/config.js';
import { configSchemaFile, configSchemaText } from '../supervisor/write-config-schema.js';
import { projectRoot } from '../supervisor/paths.js';
import type { DaemonConfig } from '../supervisor/types.js';

const noEnv: NodeJS.ProcessEnv = {};

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dv-'));
}

function writeConfig(text: string): string {
  const dir = tempDir();
  const file = path.join(dir, 'duckvisor.yaml');
  fs.writeFileSync(file, text);
  return file;
}

function load(text: string, env: NodeJS.ProcessEnv = noEnv): DaemonConfig {
  return loadConfig(writeConfig(text), env);
}

/** Joins lines so each case reads like the file it stands for (line numbers = array index + 1). */
const lines = (...content: string[]): string => content.join('\n') + '\n';

interface BadCase {
  title: string;
  yaml: string;
  line: number;
  field: string;
  /** Text the problem must contain (what is wrong / allowed). */
  says: RegExp;
}

const badCases: BadCase[] = [
  { title: 'concurrency 0', yaml: lines('state_dir: s', 'concurrency: 0'), line: 2, field: 'concurrency', says: /below the minimum 1.*integer >= 1/ },
  { title: 'concurrency of the wrong type', yaml: lines('state_dir: s', 'concurrency: two'), line: 2, field: 'concurrency', says: /expected a number, found the text "two"; .*an integer >= 1/ },
  { title: 'unknown top-level key, with a suggestion', yaml: lines('state_dir: s', 'concurency: 3'), line: 2, field: 'concurency', says: /unknown key `concurency`; did you mean `concurrency`\? allowed keys here: state_dir, warehouse/ },
  {
    title: 'unknown nested key in defaults',
    yaml: lines('state_dir: s', 'defaults:', '  stall_timout: 5m'),
    line: 3,
    field: 'defaults.stall_timout',
    says: /did you mean `stall_timeout`\?/,
  },
  {
    title: 'unknown key inside a job limits block',
    yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', '    limits:', '      rsss: 1GiB'),
    line: 6,
    field: 'jobs.a.limits.rsss',
    says: /did you mean `rss`\?.*rss, swap, disk_free_min, majflt_rate/,
  },
  { title: 'bad size unit', yaml: lines('state_dir: s', 'defaults:', '  limits:', '    rss: 512XB'), line: 4, field: 'defaults.limits.rss', says: /"512XB" is not a size; .*512MiB, 4GiB, 200MB/ },
  { title: 'size of the wrong type', yaml: lines('state_dir: s', 'defaults:', '  limits:', '    swap: [1]'), line: 4, field: 'defaults.limits.swap', says: /expected a size, found a list/ },
  { title: 'bad duration', yaml: lines('state_dir: s', 'defaults:', '  stop_grace: ten seconds'), line: 3, field: 'defaults.stop_grace', says: /is not a duration; .*250ms, 60s, 5m, 1h30m/ },
  { title: 'bare number as a duration', yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', '    stall_timeout: 60'), line: 5, field: 'jobs.a.stall_timeout', says: /bare number 60 is ambiguous/ },
  { title: 'sample_interval below 20ms', yaml: lines('state_dir: s', 'defaults:', '  sample_interval: 5ms'), line: 3, field: 'defaults.sample_interval', says: /shorter than the minimum 20ms/ },
  { title: 'warn_at out of range', yaml: lines('state_dir: s', 'defaults:', '  warn_at: 1.5'), line: 3, field: 'defaults.warn_at', says: /above the maximum 1.*0 to 1/ },
  { title: 'neither command nor extractor', yaml: lines('state_dir: s', 'jobs:', '  lonely:', '    autostart: true'), line: 3, field: 'jobs.lonely', says: /neither command nor extractor is set; a job has exactly one of command/ },
  {
    title: 'both command and extractor',
    yaml: lines('state_dir: s', 'jobs:', '  both:', '    command: [x]', '    extractor: mlflow-runs'),
    line: 5,
    field: 'jobs.both.extractor',
    says: /both command and extractor are set/,
  },
  { title: 'empty command', yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: []'), line: 4, field: 'jobs.a.command', says: /must not be empty/ },
  { title: 'command as a shell string', yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: python3 run.py'), line: 4, field: 'jobs.a.command', says: /expected a list of arguments.*no shell/ },
  {
    title: 'duplicate job names both lines',
    yaml: lines('state_dir: s', 'jobs:', '  etl:', '    command: [a]', '  etl:', '    command: [b]'),
    line: 5,
    field: 'jobs.etl',
    says: /duplicate job etl: defined on line 3 and again on line 5/,
  },
  { title: 'YAML syntax error', yaml: lines('state_dir: s', 'jobs: [a,', 'b: 2'), line: 3, field: '', says: /YAML syntax error/ },
  {
    title: 'invalid progress_pattern regex',
    yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', "    progress_pattern: '(?<done>\\d+'"),
    line: 5,
    field: 'jobs.a.progress_pattern',
    says: /is not a valid regular expression/,
  },
  {
    title: 'progress_pattern without a done group',
    yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', "    progress_pattern: '(\\d+)/(\\d+)'"),
    line: 5,
    field: 'jobs.a.progress_pattern',
    says: /no named group \(\?<done>/,
  },
  { title: 'bad cron', yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', '    schedule: "61 * * * *"'), line: 5, field: 'jobs.a.schedule', says: /not a valid cron expression/ },
  {
    title: 'unknown after dependency',
    yaml: lines('state_dir: s', 'jobs:', '  raw:', '    command: [x]', '  derived:', '    command: [y]', '    after: [rwa]'),
    line: 7,
    field: 'jobs.derived.after[0]',
    says: /unknown job `rwa`; did you mean `raw`\?/,
  },
  {
    title: 'dependency cycle',
    yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', '    after: [b]', '  b:', '    command: [y]', '    after: [a]'),
    line: 5,
    field: 'jobs.a.after',
    says: /dependency cycle a → b → a/,
  },
  { title: 'non-loopback http without a token', yaml: lines('state_dir: s', 'control:', '  http: 0.0.0.0:9464'), line: 3, field: 'control.http', says: /not a loopback address and control\.http_token is not set/ },
  { title: 'malformed host:port', yaml: lines('state_dir: s', 'control:', '  http: localhost'), line: 3, field: 'control.http', says: /is not host:port/ },
  {
    title: 'bad alert event name',
    yaml: lines('state_dir: s', 'alerts:', '  - on: [killed, exploded]', '    command: [notify]'),
    line: 3,
    field: 'alerts[0].on[1]',
    says: /"exploded" is not an alert event; .*retries_exhausted/,
  },
  { title: 'alert with both command and webhook', yaml: lines('state_dir: s', 'alerts:', '  - on: [killed]', '    command: [x]', '    webhook: http://localhost:1/'), line: 3, field: 'alerts[0]', says: /both command and webhook/ },
  { title: 'alert webhook not http', yaml: lines('state_dir: s', 'alerts:', '  - on: [failed]', '    webhook: ftp://example.com/x'), line: 4, field: 'alerts[0].webhook', says: /not an http\(s\) URL/ },
  { title: 'env value that is a number', yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', '    env:', '      THREADS: 4'), line: 6, field: 'jobs.a.env.THREADS', says: /found the number 4 \(quote it/ },
  {
    title: 'job name with shell metacharacters',
    yaml: lines('state_dir: s', 'jobs:', '  "x; rm -rf /":', '    command: [x]'),
    line: 3,
    field: 'jobs["x; rm -rf /"]',
    says: /is not an accepted job name; .*safe in file names, shells and URLs/,
  },
  { title: 'history.keep_runs negative', yaml: lines('state_dir: s', 'history:', '  keep_runs: -1'), line: 3, field: 'history.keep_runs', says: /below the minimum 0.*integer >= 0/ },
  { title: 'history.keep_days as text', yaml: lines('state_dir: s', 'history:', '  keep_days: forever'), line: 3, field: 'history.keep_days', says: /expected a number, found the text "forever"/ },
  { title: 'unknown key in history', yaml: lines('state_dir: s', 'history:', '  keep_run: 5'), line: 3, field: 'history.keep_run', says: /did you mean `keep_runs`\?/ },
  { title: 'recovery not kill or adopt', yaml: lines('state_dir: s', 'recovery: maybe'), line: 2, field: 'recovery', says: /"maybe" is not allowed; .*kill or adopt/ },
  { title: 'autostart yes is not a boolean', yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', '    autostart: yes'), line: 5, field: 'jobs.a.autostart', says: /expected true or false/ },
  { title: 'unknown retry reason', yaml: lines('state_dir: s', 'defaults:', '  retries:', '    on: [crash, oom]'), line: 4, field: 'defaults.retries.on[1]', says: /"oom" is not a retry reason/ },
  { title: 'options on a command job', yaml: lines('state_dir: s', 'jobs:', '  a:', '    command: [x]', '    options: {k: 1}'), line: 5, field: 'jobs.a.options', says: /only read by extractor jobs/ },
  { title: 'missing state_dir', yaml: lines('concurrency: 1'), line: 1, field: 'state_dir', says: /is missing; set state_dir/ },
  { title: 'top level is a list', yaml: lines('- a', '- b'), line: 1, field: '', says: /expected a mapping, found a list/ },
  {
    title: 'socket path too long for a unix socket',
    yaml: lines('state_dir: s', 'control:', `  socket: /tmp/${'x'.repeat(120)}.sock`),
    line: 3,
    field: 'control.socket',
    says: /unix socket paths are limited to 107 bytes/,
  },
];

for (const badCase of badCases) {
  test(`rejects: ${badCase.title}`, (t) => {
    const file = writeConfig(badCase.yaml);
    const error = t.throws(() => loadConfig(file, noEnv), { instanceOf: ConfigError });
    const problem = error.problems.find((candidate) => candidate.fieldPath === badCase.field && badCase.says.test(candidate.problem + '; ' + candidate.allowed));
    t.truthy(problem, `no problem at ${badCase.field} matching ${String(badCase.says)} in:\n${error.message}`);
    t.is(problem?.line, badCase.line, error.message);
    // The message itself names the file, the line and the field.
    const field = badCase.field ? ` ${badCase.field}:` : '';
    t.true(error.message.includes(`${file}:${badCase.line}:`), error.message);
    t.true(error.message.split('\n').some((line) => line.startsWith(`${file}:${badCase.line}:`) && line.includes(`:${field}`)), error.message);
  });
}

test('the table covers at least 20 malformed configs', (t) => {
  t.true(badCases.length >= 20);
});

test('every problem in a file is reported at once, in line order, and the error carries the first', (t) => {
  const file = writeConfig(
    lines('state_dir: s', 'concurrency: 0', 'defaults:', '  limits:', '    rss: lots', 'jobs:', '  a:', '    autostart: 1', '  b:', '    command: [x]', '    after: [zz]'),
  );
  const error = t.throws(() => loadConfig(file, noEnv), { instanceOf: ConfigError });
  const located = error.problems.map((problem) => `${problem.line} ${problem.fieldPath}`);
  t.deepEqual(located, ['2 concurrency', '5 defaults.limits.rss', '7 jobs.a', '8 jobs.a.autostart', '11 jobs.b.after[0]']);
  t.is(error.message.split('\n').length, 5);
  t.is(error.line, 2);
  t.is(error.column, 14);
  t.is(error.fieldPath, 'concurrency');
  t.is(error.file, file);
});

test('a missing file names the path and how to choose another', (t) => {
  const file = path.join(tempDir(), 'absent.yaml');
  const error = t.throws(() => loadConfig(file, noEnv), { instanceOf: ConfigError });
  t.regex(error.message, new RegExp(`^${escape(file)}: cannot read the config file: it does not exist; .*--config FILE`));
  t.is(error.line, undefined);
});

test('an unreadable path (a directory) names the path and what to pass instead', (t) => {
  const dir = tempDir();
  const error = t.throws(() => loadConfig(dir, noEnv), { instanceOf: ConfigError });
  t.regex(error.message, new RegExp(`^${escape(dir)}: cannot read the config file: it is a directory; pass the YAML file itself`));
});

test('an unreadable path (a broken symbolic link) names the link and its target', (t) => {
  const dir = tempDir();
  const link = path.join(dir, 'duckvisor.yaml');
  fs.symlinkSync(path.join(dir, 'gone.yaml'), link);
  const error = t.throws(() => loadConfig(link, noEnv), { instanceOf: ConfigError });
  t.true(error.message.startsWith(`${link}: cannot read the config file: it is a broken symbolic link to ${path.join(dir, 'gone.yaml')}`), error.message);
});

test('a path through a regular file is reported, not thrown raw', (t) => {
  const file = writeConfig('state_dir: s\n');
  const error = t.throws(() => loadConfig(path.join(file, 'nested.yaml'), noEnv), { instanceOf: ConfigError });
  t.regex(error.message, /a part of the path is not a directory/);
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('defaults are applied to a minimal config', (t) => {
  const file = writeConfig(lines('state_dir: state', 'jobs:', '  cmd:', '    command: [python3, x.py]', '  ext:', '    extractor: mlflow-runs'));
  const config = loadConfig(file, noEnv);
  const dir = path.dirname(file);
  t.is(config.file, file);
  t.is(config.state_dir, path.join(dir, 'state'));
  t.is(config.warehouse, path.join(dir, 'state', 'warehouse.duckdb'));
  t.is(config.concurrency, 2);
  t.is(config.recovery, 'kill');
  t.deepEqual(config.history, { keep_runs: 1000, keep_days: 90 });
  t.deepEqual(config.control, { socket: path.join(dir, 'state', 'duckvisor.sock') });
  t.deepEqual(config.alerts, []);
  t.deepEqual(config.defaults, {
    limits: {},
    heartbeat_timeout: 30_000,
    stall_timeout: 600_000,
    max_runtime: 0,
    stop_grace: 10_000,
    sample_interval: 250,
    warn_at: 0.8,
    thrash_window: 10_000,
    retries: { max: 3, backoff: 5_000, factor: 2, max_backoff: 300_000, jitter: 0.2, on: ['crash', 'heartbeat', 'stalled', 'timeout', 'interrupted'] },
  });
  const cmd = config.jobs.get('cmd')!;
  const ext = config.jobs.get('ext')!;
  t.deepEqual(cmd.command, ['python3', 'x.py']);
  t.is(cmd.extractor, undefined);
  t.is(cmd.heartbeat, 'stdout');
  t.is(ext.heartbeat, 'ipc');
  t.is(ext.extractor, 'mlflow-runs');
  t.true(cmd.autostart);
  t.deepEqual(cmd.options, {});
  t.deepEqual(cmd.env, {});
  t.deepEqual(cmd.after, []);
  t.is(cmd.cwd, dir);
  t.is(cmd.schedule, undefined);
  t.is(cmd.stall_timeout, 600_000);
  t.deepEqual(cmd.retries, config.defaults.retries);
  // The default progress pattern reads the original scripts' lines.
  const match = new RegExp(cmd.progress_pattern).exec('[HEARTBEAT] 17/250');
  t.is(match?.groups?.['done'], '17');
  t.is(match?.groups?.['total'], '250');
});

test('per-job settings merge key by key over defaults', (t) => {
  const config = load(
    lines(
      'state_dir: s',
      'defaults:',
      '  limits: {rss: 512MiB, swap: 100MB, disk_free_min: 1GiB, majflt_rate: 200}',
      '  stall_timeout: 5m',
      '  max_runtime: 1h30m',
      '  retries: {max: 5, backoff: 10s, on: [crash]}',
      'jobs:',
      '  etl:',
      '    command: [x]',
      '    limits: {rss: 4GiB, disk_free_min: none}',
      '    stall_timeout: 250ms',
      '    max_runtime: none',
      '    warn_at: 0.5',
      '    retries: {max: 1, on: [memory, swap]}',
      '  plain:',
      '    command: [y]',
    ),
  );
  const etl = config.jobs.get('etl')!;
  t.deepEqual(etl.limits, { rss: 4 * 1024 ** 3, swap: 100_000_000, majflt_rate: 200 });
  t.is(etl.stall_timeout, 250);
  t.is(etl.max_runtime, 0);
  t.is(etl.warn_at, 0.5);
  t.deepEqual(etl.retries, { max: 1, backoff: 10_000, factor: 2, max_backoff: 300_000, jitter: 0.2, on: ['memory', 'swap'] });
  const plain = config.jobs.get('plain')!;
  t.deepEqual(plain.limits, { rss: 512 * 1024 ** 2, swap: 100_000_000, disk_free_min: 1024 ** 3, majflt_rate: 200 });
  t.is(plain.stall_timeout, 300_000);
  t.is(plain.max_runtime, 5_400_000);
  t.deepEqual(plain.retries.on, ['crash']);
  t.is(plain.retries.max, 5);
});

test('relative paths resolve against the config file directory', (t) => {
  const config = load(
    lines(
      'state_dir: ../var/state',
      'warehouse: ./out/wh.duckdb',
      'control:',
      '  socket: run/dv.sock',
      'jobs:',
      '  a:',
      '    command: [python3, script.py]',
      '    cwd: ../scripts',
      '  b:',
      '    extractor: ./my-extractor.js',
      '  c:',
      '    extractor: mlflow-artifacts',
      '    cwd: /srv/abs',
    ),
  );
  const dir = path.dirname(config.file);
  t.is(config.state_dir, path.resolve(dir, '../var/state'));
  t.is(config.warehouse, path.join(dir, 'out/wh.duckdb'));
  t.is(config.control.socket, path.join(dir, 'run/dv.sock'));
  t.is(config.jobs.get('a')!.cwd, path.resolve(dir, '../scripts'));
  t.deepEqual(config.jobs.get('a')!.command, ['python3', 'script.py']);
  t.is(config.jobs.get('b')!.extractor, path.join(dir, 'my-extractor.js'));
  t.is(config.jobs.get('c')!.extractor, 'mlflow-artifacts');
  t.is(config.jobs.get('c')!.cwd, '/srv/abs');
});

test('systemd directories provide state_dir and the socket default', (t) => {
  const config = load(lines('jobs:'), { STATE_DIRECTORY: '/var/lib/duckvisor', RUNTIME_DIRECTORY: '/run/duckvisor' });
  t.is(config.state_dir, '/var/lib/duckvisor');
  t.is(config.control.socket, '/run/duckvisor/duckvisor.sock');
  t.is(config.jobs.size, 0);
  const explicit = load(lines('state_dir: /tmp/st', 'control:', '  socket: /tmp/x.sock'), { RUNTIME_DIRECTORY: '/run/duckvisor' });
  t.is(explicit.control.socket, '/tmp/x.sock');
});

test('empty jobs and alerts are allowed', (t) => {
  t.is(load(lines('state_dir: s')).jobs.size, 0);
  t.is(load(lines('state_dir: s', 'jobs:', 'alerts:')).jobs.size, 0);
  t.is(load(lines('state_dir: s', 'jobs: {}')).alerts.length, 0);
});

test('control.http: loopback needs no token; another address does once a token is set', (t) => {
  t.is(load(lines('state_dir: s', 'control:', '  http: 127.0.0.1:0')).control.http, '127.0.0.1:0');
  t.is(load(lines('state_dir: s', 'control:', '  http: "[::1]:9464"')).control.http, '[::1]:9464');
  const open = load(lines('state_dir: s', 'control:', '  http: 0.0.0.0:9464', '  http_token: s3cret-token'));
  t.deepEqual({ http: open.control.http, token: open.control.http_token }, { http: '0.0.0.0:9464', token: 's3cret-token' });
});

test('alerts resolve with their defaults', (t) => {
  const config = load(
    lines('state_dir: s', 'alerts:', '  - on: [killed, failed, killed]', '    command: [notify, --json]', '  - on: [warning]', '    webhook: https://example.com/hook', '    timeout: 3s', '    retries: 0'),
  );
  t.deepEqual(config.alerts, [
    { on: ['killed', 'failed'], command: ['notify', '--json'], timeout: 10_000, retries: 2 },
    { on: ['warning'], webhook: 'https://example.com/hook', timeout: 3_000, retries: 0 },
  ]);
});

test('a valid schedule, dependencies and env are kept', (t) => {
  const config = load(
    lines('state_dir: s', 'jobs:', '  raw:', '    extractor: mlflow-runs', '  derived:', '    extractor: rankings', '    after: [raw]', '    schedule: "*/15 * * * *"', '    env: {MODE: "fast", N: "4"}'),
  );
  const derived = config.jobs.get('derived')!;
  t.deepEqual(derived.after, ['raw']);
  t.is(derived.schedule, '*/15 * * * *');
  t.deepEqual(derived.env, { MODE: 'fast', N: '4' });
});

test('config path resolution: explicit > $DUCKVISOR_CONFIG > ./duckvisor.yaml > /etc', (t) => {
  const cwd = tempDir();
  const envFile = path.join(tempDir(), 'from-env.yaml');
  t.is(resolveConfigPath('given.yaml', { DUCKVISOR_CONFIG: envFile }, cwd), path.join(cwd, 'given.yaml'));
  t.is(resolveConfigPath(undefined, { DUCKVISOR_CONFIG: envFile }, cwd), envFile);
  t.is(resolveConfigPath(undefined, {}, cwd), systemConfigPath);
  t.is(systemConfigPath, '/etc/duckvisor/duckvisor.yaml');
  fs.writeFileSync(path.join(cwd, 'duckvisor.yaml'), 'state_dir: s\n');
  t.is(resolveConfigPath(undefined, {}, cwd), path.join(cwd, 'duckvisor.yaml'));
  t.is(resolveConfigPath(undefined, { DUCKVISOR_CONFIG: envFile }, cwd), envFile);
  t.is(resolveConfigPath(undefined, { DUCKVISOR_CONFIG: '' }, cwd), path.join(cwd, 'duckvisor.yaml'));
});

test('diffConfigs describes what a reload changes', (t) => {
  const base = lines(
    'state_dir: s',
    'concurrency: 2',
    'defaults:',
    '  stall_timeout: 10m',
    'jobs:',
    '  etl:',
    '    command: [x]',
    '    limits: {rss: 512MiB}',
    '  gone:',
    '    command: [y]',
  );
  const changed = lines(
    'state_dir: s',
    'concurrency: 4',
    'defaults:',
    '  stall_timeout: 5m',
    'jobs:',
    '  etl:',
    '    command: [x, --fast]',
    '    limits: {rss: 1GiB}',
    '  fresh:',
    '    extractor: mlflow-runs',
    'alerts:',
    '  - on: [killed]',
    '    webhook: http://127.0.0.1:9/hook',
  );
  const dir = tempDir();
  const file = path.join(dir, 'duckvisor.yaml');
  fs.writeFileSync(file, base);
  const before = loadConfig(file, noEnv);
  fs.writeFileSync(file, changed);
  const after = loadConfig(file, noEnv);
  t.deepEqual(diffConfigs(before, after), [
    'config: concurrency 2 → 4',
    'defaults: stall_timeout 10m → 5m',
    'job gone removed',
    'job etl: limits.rss 512 MiB → 1 GiB',
    'job etl: command [x] → [x, --fast]',
    'job fresh added',
    'alert added: on [killed] → http://127.0.0.1:9/hook (timeout 10s, retries 2)',
  ]);
  t.deepEqual(diffConfigs(after, after), []);
});

test('the shipped config/duckvisor.yaml loads', (t) => {
  const file = path.join(projectRoot, 'config', 'duckvisor.yaml');
  const config = loadConfig(file, noEnv);
  t.is(config.state_dir, path.join(projectRoot, 'var', 'state'));
  t.is(config.warehouse, path.join(projectRoot, 'var', 'warehouse.duckdb'));
  t.is(config.control.socket, path.join(projectRoot, 'var', 'run', 'duckvisor.sock'));
  t.deepEqual([...config.jobs.keys()], ['mlflow-runs', 'mlflow-metric-history', 'mlflow-artifacts']);
  for (const job of config.jobs.values()) {
    t.is(job.extractor, job.name);
    t.true(job.autostart);
    t.is(job.heartbeat, 'ipc');
    t.is(job.options['source'], './sample/mlruns');
    t.is(job.cwd, path.join(projectRoot, 'config'));
  }
});

test('history retention is read, 0 switches a rule off, and a reload reports its change', (t) => {
  const before = load(lines('state_dir: s', 'history:', '  keep_runs: 50', '  keep_days: 0'));
  t.deepEqual(before.history, { keep_runs: 50, keep_days: 0 });
  const after = load(lines('state_dir: s', 'history:', '  keep_runs: 50', '  keep_days: 7.5'));
  t.deepEqual(after.history, { keep_runs: 50, keep_days: 7.5 });
  const changes = diffConfigs(before, after);
  t.true(changes.some((line) => line.includes('history.keep_days') && line.includes('7.5')), changes.join('\n'));
});

test('config/duckvisor.schema.json is current (regenerate: node dist/supervisor/write-config-schema.js)', (t) => {
  const committed = fs.readFileSync(configSchemaFile, 'utf8');
  t.is(committed, configSchemaText());
  const schema = JSON.parse(committed) as { properties: Record<string, unknown> };
  t.deepEqual(Object.keys(schema.properties), ['state_dir', 'warehouse', 'concurrency', 'recovery', 'control', 'history', 'defaults', 'jobs', 'alerts']);
});
