// The shipped unit file passes `systemd-analyze verify`, keeps the settings the daemon relies on, and the
// check itself catches a broken unit (so a clean result means something).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { projectRoot } from '../supervisor/paths.js';

const unitPath = path.join(projectRoot, 'systemd', 'duckvisord.service');
const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const haveAnalyze = analyze.status === 0;
if (!haveAnalyze) console.log('systemd-analyze verify skipped: systemd-analyze is not installed on this machine');
const withAnalyze = haveAnalyze ? test : test.skip;

/** Verifies `text` as duckvisord.service in a fresh directory; returns the diagnostic lines about the unit. */
function verify(text: string): { status: number | null; problems: string[]; output: string } {
  const dir = fs.mkdtempSync(os.tmpdir() + '/dv-');
  try {
    const file = path.join(dir, 'duckvisord.service');
    fs.writeFileSync(file, text);
    const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
    const output = `${result.stdout}${result.stderr}`;
    const problems = output.split('\n').filter((line) => line.includes('duckvisord.service') || line.includes(dir));
    return { status: result.status, problems, output };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** ExecStart runs duckvisord through /usr/bin/env, which exists on every machine; the copy pins that explicitly. */
function withRealExecStart(text: string): string {
  return text.replace(/^ExecStart=.*$/m, (line) => (line.startsWith('ExecStart=/usr/bin/env ') ? line : 'ExecStart=/usr/bin/env true'));
}

withAnalyze('systemd-analyze verify reports nothing about duckvisord.service', (t) => {
  const result = verify(withRealExecStart(fs.readFileSync(unitPath, 'utf8')));
  if (result.output.trim()) t.log(result.output);
  t.is(result.status, 0);
  t.deepEqual(result.problems, []);
});

withAnalyze('the verify check catches real unit errors', (t) => {
  const good = withRealExecStart(fs.readFileSync(unitPath, 'utf8'));
  const broken = [
    good.replace('Type=notify', 'Type=notifyy'),
    good.replace('KillMode=mixed', 'KillMode=mixed # trailing comments are values in unit files'),
    good.replace(/^ExecStart=.*$/m, 'ExecStart=/nonexistent/duckvisord --config /etc/duckvisor/duckvisor.yaml'),
    good.replace('[Service]', '[Service]\nWatchdogSecs=30s'),
  ];
  for (const text of broken) {
    const result = verify(text);
    t.true(result.problems.length > 0, `expected a complaint for:\n${text.split('\n').find((line, i) => line !== good.split('\n')[i])}`);
  }
});

/** Reads `Key=value` settings of one section (later assignments win, as in systemd). */
function section(text: string, name: string): Map<string, string> {
  const settings = new Map<string, string>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) current = header[1]!;
    else if (current === name) {
      const eq = line.indexOf('=');
      settings.set(line.slice(0, eq), line.slice(eq + 1));
    }
  }
  return settings;
}

test('the unit keeps the settings the daemon relies on', (t) => {
  const text = fs.readFileSync(unitPath, 'utf8');
  const service = section(text, 'Service');
  t.is(service.get('Type'), 'notify');
  t.is(service.get('NotifyAccess'), 'all');
  t.is(service.get('KillMode'), 'mixed');
  t.is(service.get('OOMPolicy'), 'continue');
  t.is(service.get('Restart'), 'on-failure');
  t.is(service.get('StateDirectory'), 'duckvisor');
  t.is(service.get('RuntimeDirectory'), 'duckvisor');
  t.is(service.get('RuntimeDirectoryMode'), '0750');
  t.is(service.get('ExecReload'), '/bin/kill -HUP $MAINPID');
  t.regex(service.get('WatchdogSec') ?? '', /^\d+s$/);
  t.false(service.has('MemoryDenyWriteExecute'), 'V8 needs W+X pages');
  t.not(service.get('ProtectControlGroups'), 'yes', 'per-run cgroups need a writable delegated subtree');
  // Comments only on their own lines: no value may contain " #".
  for (const [key, value] of service) t.false(/\s[#;]/.test(value), `${key}= has a trailing comment`);

  // TimeoutStopSec must exceed the longest stop_grace of the sample config (the daemon stops jobs itself).
  const seconds = (value: string) => Number(/^(\d+)s$/.exec(value)?.[1] ?? NaN);
  const sample = parseYaml(fs.readFileSync(path.join(projectRoot, 'systemd', 'duckvisor.yaml'), 'utf8')) as {
    defaults: { stop_grace: string };
    jobs: Record<string, { stop_grace?: string }>;
    state_dir: string;
    control: { socket: string };
  };
  const graces = [sample.defaults.stop_grace, ...Object.values(sample.jobs).map((job) => job.stop_grace ?? sample.defaults.stop_grace)];
  t.true(seconds(service.get('TimeoutStopSec')!) > Math.max(...graces.map(seconds)));
  t.is(sample.state_dir, '/var/lib/duckvisor');
  t.is(sample.control.socket, '/run/duckvisor/duckvisor.sock');
});
