// Per-run cgroups: detection (real host + every branch on a fabricated cgroupfs layout), and the real
// create / join / kill / remove path wherever the host has a writable cgroup v2 hierarchy.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { projectRoot } from '../supervisor/paths.js';
import { RunCgroup, detectCgroupV2, prepareCgroupSubtree, runsFolder } from '../supervisor/cgroup.js';

const treeFixture = path.join(projectRoot, 'test', 'fixtures', 'cgroup-tree.mjs');

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(os.tmpdir() + '/dv-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A fabricated layout: `mounts` lines, `/proc/self/cgroup` text, and files under the dir (cgroupfs look-alike). */
function layout(dir: string, mounts: string[], cgroup: string, files: Record<string, string>): { mountsFile: string; cgroupFile: string } {
  const mountsFile = path.join(dir, 'mounts');
  const cgroupFile = path.join(dir, 'cgroup');
  fs.writeFileSync(mountsFile, mounts.join('\n') + '\n');
  fs.writeFileSync(cgroupFile, cgroup);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return { mountsFile, cgroupFile };
}

function isDead(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('this host: detection gives a clear, consistent answer', (t) => {
  const support = detectCgroupV2();
  t.log(support.reason);
  if (support.available) {
    t.regex(support.reason, /^cgroup v2 available: per-run cgroups under /);
    t.true(support.memory && support.writable);
  } else {
    t.regex(support.reason, /^cgroup v2 not available: \S/);
  }
  // A host whose memory controller is mounted as cgroup v1 can never offer memory.max per run.
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8');
  if (/^\S+ \S+ cgroup \S*\bmemory\b/m.test(mounts)) {
    t.false(support.available);
    t.regex(support.reason, /cgroup v1\/hybrid hierarchy, the memory controller is on cgroup v1/);
  }
});

test('no cgroup2 mount (cgroup v1 only) is reported as such', (t) => {
  const dir = tempDir(t);
  const files = layout(dir, ['cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0', 'proc /proc proc rw 0 0'], '4:memory:/x\n', {});
  const support = detectCgroupV2(files);
  t.false(support.available);
  t.is(support.reason, 'cgroup v2 not available: no cgroup2 filesystem is mounted (cgroup v1 only: /sys/fs/cgroup/memory)');
});

test('hybrid: cgroup2 without the memory controller is reported, kill-only support is still described', (t) => {
  const dir = tempDir(t);
  const files = layout(
    dir,
    [`cgroup ${dir}/memory cgroup rw,memory 0 0`, `cgroup2 ${dir}/unified cgroup2 rw 0 0`],
    '4:memory:/x\n0::/\n',
    { 'unified/cgroup.controllers': 'hugetlb\n', 'unified/cgroup.procs': '1\n', 'unified/cgroup.kill': '' },
  );
  const support = detectCgroupV2(files);
  t.false(support.available);
  t.is(
    support.reason,
    `cgroup v2 not available: cgroup v1/hybrid hierarchy, the memory controller is on cgroup v1 (${dir}/memory); no memory controller in ${dir}/unified/cgroup.controllers (controllers: hugetlb)`,
  );
  t.like(support, { mount: `${dir}/unified`, base: `${dir}/unified`, memory: false, kill: true });
});

test('pure cgroup v2 with a delegated, writable subtree is available', (t) => {
  const dir = tempDir(t);
  const files = layout(dir, [`cgroup2 ${dir} cgroup2 rw,nsdelegate 0 0`], '0::/system.slice/duckvisord.service\n', {
    'system.slice/duckvisord.service/cgroup.controllers': 'cpu io memory pids\n',
    'system.slice/duckvisord.service/cgroup.procs': '',
    'system.slice/duckvisord.service/cgroup.kill': '',
  });
  const support = detectCgroupV2(files);
  t.true(support.available);
  t.is(support.base, `${dir}/system.slice/duckvisord.service`);
  t.is(support.reason, `cgroup v2 available: per-run cgroups under ${dir}/system.slice/duckvisord.service/${runsFolder} (memory.max, cgroup.kill)`);
});

test('missing pieces each get their own reason', (t) => {
  const dir = tempDir(t);
  const noEntry = layout(dir, [`cgroup2 ${dir} cgroup2 rw 0 0`], '1:name=systemd:/\n', {});
  t.is(detectCgroupV2(noEntry).reason, `cgroup v2 not available: ${noEntry.cgroupFile} has no cgroup v2 entry ("0::/…")`);
  t.is(detectCgroupV2({ ...noEntry, base: `${dir}/nowhere` }).reason, `cgroup v2 not available: ${dir}/nowhere is not a cgroup v2 directory`);
  t.is(detectCgroupV2({ mountsFile: `${dir}/absent` }).reason, `cgroup v2 not available: cannot read ${dir}/absent`);
});

test('run ids that cannot name a directory are refused', (t) => {
  const support = { available: true, reason: '', mount: '/x', base: '/x', memory: true, kill: true, writable: true };
  t.throws(() => RunCgroup.create(support, '../escape'), { message: /cannot name a cgroup/ });
  t.throws(() => RunCgroup.create(support, 'a b'), { message: /cannot name a cgroup/ });
});

/** Starts the tree fixture inside `group` via its launch prefix; returns the job and escaped pids. */
async function startTree(t: { teardown(fn: () => void): void }, group: RunCgroup, arg = ''): Promise<{ job: number; escaped: number }> {
  const argv = [...group.launchPrefix(), process.execPath, treeFixture, arg];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const pids = await new Promise<{ job: number; escaped: number }>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`tree fixture exited early: ${code ?? signal}`)));
    readline.createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line) as { job: number; escaped: number }));
  });
  child.removeAllListeners('exit');
  t.teardown(() => {
    for (const pid of [pids.job, pids.escaped]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // dead, as expected
      }
    }
  });
  return pids;
}

// Tracking + cgroup.kill need only a writable cgroup v2 hierarchy (even a hybrid host's unified one).
// As root the tests work below the hierarchy's root (exempt from the no-internal-processes rule), so they
// never move this host's own processes around; otherwise below our own cgroup, if it is delegated to us.
const own = detectCgroupV2();
const testBase = own.mount && process.getuid?.() === 0 ? own.mount : own.base;
const probed = testBase ? detectCgroupV2({ base: testBase }) : own;
const host = probed.base && probed.writable ? prepareCgroupSubtree(probed) : probed;
const trackable = host.base !== null && host.writable && host.kill;
if (!trackable) console.log(`cgroup kill path skipped: no writable cgroup v2 hierarchy with cgroup.kill (${host.reason})`);
test.after.always(() => {
  // Leave no empty runs folder behind on the host (the daemon creates it again when needed).
  if (!host.base || !fs.existsSync(path.join(host.base, runsFolder))) return;
  try {
    fs.rmdirSync(path.join(host.base, runsFolder));
  } catch {
    // In use by a daemon on this host: leave it.
  }
});
(trackable ? test.serial : test.skip)('real cgroup: the job joins before exec, cgroup.kill kills an escaped grandchild, the cgroup is removed', async (t) => {
  const ready = prepareCgroupSubtree(host);
  const group = RunCgroup.create(ready, `test-${process.pid}-${Date.now()}`);
  t.teardown(async () => {
    group.kill();
    await group.remove().catch(() => undefined);
  });
  const { job, escaped } = await startTree(t, group);
  const inside = group.pids();
  t.true(inside.includes(job), `job ${job} in ${inside.join(',')}`);
  t.true(inside.includes(escaped), 'the grandchild that left the process group is still in the cgroup');
  t.true(fs.readFileSync(`/proc/${escaped}/cgroup`, 'utf8').includes(group.path.slice((host.mount ?? '').length)));

  group.kill();
  await until(() => isDead(job) && isDead(escaped), 5000, 'every process of the cgroup to die');
  await group.remove();
  t.false(fs.existsSync(group.path));
});

if (!host.available) console.log(`cgroup memory.max path skipped: ${host.reason}`);
(host.available ? test.serial : test.skip)('real cgroup v2 with memory: memory.max is enforced by the kernel and counted', async (t) => {
  const ready = prepareCgroupSubtree(host);
  t.true(ready.available, ready.reason);
  const group = RunCgroup.create(ready, `test-mem-${process.pid}-${Date.now()}`, { memoryMax: 64 * 1024 * 1024, swapMax: 0 });
  t.teardown(async () => {
    group.kill();
    await group.remove().catch(() => undefined);
  });
  t.is(fs.readFileSync(path.join(group.path, 'memory.max'), 'utf8').trim(), String(64 * 1024 * 1024));
  t.is(group.applied.memoryMax, 64 * 1024 * 1024);
  const { job } = await startTree(t, group, 'alloc:512');
  await until(() => group.oomKills() > 0 || isDead(job), 20_000, 'the kernel OOM killer inside the cgroup');
  t.true(group.oomKills() > 0);
  group.kill();
  await until(() => group.pids().length === 0, 5000, 'the cgroup to empty');
  await group.remove();
});
