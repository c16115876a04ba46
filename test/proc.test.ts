// /proc readers and the tree tracker against real processes (zombies, setsid escapers, recycled identity).
import test from 'ava';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostSwapInUse, isAlive, PAGE_SIZE, parseStat, parseStatusMemory, processLiveness, processStartTime, readChildren, readMemory, readStat, scanProcessGroups } from '../supervisor/proc.js';
import { freeBytes, ProcessTree, Sampler, samplingDelay } from '../supervisor/sample.js';
import { makeJob, killIfRunning, runningInProc } from './helpers/job.js';

function startDetached(script: string): number {
  const child = spawn('bash', ['-c', script], { detached: true, stdio: 'ignore' });
  child.unref();
  return child.pid!;
}

async function until<T>(probe: () => T | null | undefined | false, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = probe();
    if (value) return value;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('parseStat counts fields after the last parenthesis (comm with spaces and parens)', (t) => {
  const text = '4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 100 0 7 0 12 34 0 0 20 0 1 0 987654 1000 200 18446744073709551615';
  const stat = parseStat(text)!;
  t.is(stat.pid, 4242);
  t.is(stat.comm, 'we ird) (name)');
  t.is(stat.state, 'S');
  t.is(stat.ppid, 1);
  t.is(stat.pgrp, 4242);
  t.is(stat.session, 4242);
  t.is(stat.majflt, 7);
  t.is(stat.utime, 12);
  t.is(stat.stime, 34);
  t.is(stat.startTime, '987654');
  t.is(stat.threads, 1);
  t.is(stat.rss, 200 * PAGE_SIZE);
  t.is(parseStat('garbage'), null);
});

test('parseStatusMemory reads VmRSS, VmSwap and Threads in bytes', (t) => {
  const text = 'Name:\tx\nVmPeak:\t 1 kB\nVmRSS:\t  2048 kB\nVmSwap:\t     12 kB\nThreads:\t7\n';
  t.deepEqual(parseStatusMemory(text), { rss: 2048 * 1024, swap: 12 * 1024, threads: 7 });
  t.deepEqual(parseStatusMemory('Name:\tkthread\nThreads:\t1\n'), { rss: 0, swap: 0, threads: 1 });
});

test('own process: stat, memory, start time', (t) => {
  const stat = readStat(process.pid)!;
  t.is(stat.pid, process.pid);
  t.is(stat.ppid, process.ppid);
  t.true(readMemory(process.pid)!.rss > 1024 * 1024);
  // stat's rss (pages) and status's VmRSS are the same counter, read a moment apart.
  t.true(Math.abs(stat.rss - readMemory(process.pid)!.rss) < 8 * 1024 * 1024);
  t.is(typeof hostSwapInUse(0), 'boolean');
  t.is(processStartTime(process.pid), stat.startTime);
  t.true(isAlive(process.pid));
  t.true(isAlive(process.pid, stat.startTime));
  t.false(isAlive(process.pid, String(Number(stat.startTime) + 1)), 'another start time means another process');
  t.is(processLiveness(2 ** 22 + 12345), 'gone');
});

test('a zombie is dead for isAlive although kill(pid, 0) still succeeds', async (t) => {
  // `sleep 100` (exec'd) never waits for its child, so the short sleep stays a zombie.
  const parent = startDetached('sleep 0.05 & exec sleep 100');
  t.teardown(() => killIfRunning([parent]));
  const [zombie] = await until(() => {
    const children = readChildren(parent);
    return children.length > 0 && readStat(children[0]!)?.state === 'Z' ? children : null;
  }, 'the zombie');
  t.notThrows(() => process.kill(zombie!, 0));
  t.is(processLiveness(zombie!), 'zombie');
  t.false(isAlive(zombie!));
  t.true(isAlive(parent));
});

test('the tree remembers a setsid escaper after its parent died and it was reparented', async (t) => {
  const leader = startDetached('setsid sleep 100 >/dev/null 2>&1 </dev/null & echo started; sleep 0.6');
  const tree = new ProcessTree(leader, processStartTime(leader)!);
  const escaper = await until(() => tree.collect().find((member) => member.pid !== leader && member.stat.comm === 'sleep' && member.stat.session !== leader), 'the escaper');
  t.teardown(() => killIfRunning([leader, escaper.pid]));
  t.not(escaper.stat.pgrp, leader, 'the escaper left the process group');
  await until(() => !runningInProc(leader), 'the leader to exit');
  const members = tree.collect();
  t.deepEqual(members.map((member) => member.pid), [escaper.pid]);
  t.not(readStat(escaper.pid)!.ppid, leader, 'reparented');
  t.is(tree.recorded().get(escaper.pid), escaper.startTime);
});

test('group members are found by the /proc scan even when no parent link leads to them', async (t) => {
  // The middle bash exits at once, so the sleep is reparented before anyone walked to it.
  const leader = startDetached('bash -c "sleep 100 >/dev/null 2>&1 </dev/null &"; exec sleep 100');
  const tree = new ProcessTree(leader, processStartTime(leader)!);
  t.teardown(() => killIfRunning(tree.recorded().keys()));
  const orphan = await until(() => scanProcessGroups().get(leader)?.find((stat) => stat.pid !== leader && stat.ppid !== leader), 'the orphan');
  t.false(tree.collect().some((member) => member.pid === orphan.pid), 'a walk from the leader cannot see it');
  t.true(tree.collect(0).some((member) => member.pid === orphan.pid), 'the group scan does');
  t.true(tree.collect().some((member) => member.pid === orphan.pid), 'and from then on it is remembered');
});

test('Sampler sums the tree and reports the sample fields', async (t) => {
  const leader = startDetached('sleep 100 & sleep 100 & wait');
  t.teardown(() => killIfRunning(sampler.tree.recorded().keys()));
  const sampler = new Sampler(new ProcessTree(leader, processStartTime(leader)!), ['/definitely/not/here/warehouse.duckdb']);
  const reading = await until(() => {
    const r = sampler.read();
    return r.sample.procs === 3 ? r : null;
  }, 'three processes');
  const { sample } = reading;
  t.is(sample.procs, 3);
  t.is(sample.rss, reading.members.reduce((sum, m) => sum + m.rss, 0));
  t.true(sample.rss > 0);
  t.true(sample.cpu >= 0);
  t.true(sample.majflt_rate >= 0);
  t.true(Number.isFinite(sample.disk_free) && sample.disk_free > 0, 'a missing path is measured on its nearest existing ancestor');
  t.is(sampler.count >= 1, true);
});

test('freeBytes measures the root filesystem; samplingDelay speeds up near a limit', (t) => {
  t.true(freeBytes('/') > 0);
  const job = makeJob({ sample_interval: 250, limits: { rss: 1000, swap: 1000, disk_free_min: 1000, majflt_rate: 100 } });
  const calm = { at: 0, rss: 100, swap: 0, cpu: 0, majflt_rate: 0, disk_free: 10_000, procs: 1 };
  t.is(samplingDelay(job, null), 250);
  t.is(samplingDelay(job, calm), 250);
  t.is(samplingDelay(job, { ...calm, rss: 810 }), 62);
  t.is(samplingDelay(job, { ...calm, swap: 900 }), 62);
  t.is(samplingDelay(job, { ...calm, majflt_rate: 90 }), 62);
  t.is(samplingDelay(job, { ...calm, disk_free: 1100 }), 62);
  t.is(samplingDelay(makeJob({ sample_interval: 100, limits: { rss: 1000 } }), { ...calm, rss: 900 }), 50, 'never below 50 ms');
  t.is(samplingDelay(makeJob({ sample_interval: 250, limits: {} }), { ...calm, rss: 10 ** 12 }), 250, 'no limit, no hurry');
});

test('a child forked by a non-main thread outside the group is found by the walk while other processes are being born', async (t) => {
  // The thread's child leaves the group at once (setsid), so only the thread's children file leads to it;
  // the short-lived `true` processes keep moving the pid cursor, the path where other threads are read less often.
  const script = 'import subprocess, threading, time\n' +
    'threading.Thread(target=lambda: (time.sleep(0.3), subprocess.Popen(["sleep", "100"], start_new_session=True).wait())).start()\n' +
    'time.sleep(100)\n';
  const leader = spawn('python3', ['-c', script], { detached: true, stdio: 'ignore' });
  leader.unref();
  const tree = new ProcessTree(leader.pid!, processStartTime(leader.pid!)!);
  let churn = true;
  const churner = (async () => {
    while (churn) {
      await new Promise((resolve) => spawn('true').on('exit', resolve));
      await sleep(10);
    }
  })();
  try {
    const escaper = await until(() => tree.collect().find((member) => member.pid !== leader.pid && member.stat.comm === 'sleep'), 'the thread-forked escaper');
    t.teardown(() => killIfRunning([escaper.pid]));
    t.not(escaper.stat.pgrp, leader.pid, 'it left the process group, so no group scan found it');
    t.is(readStat(escaper.pid)!.ppid, leader.pid!, 'its parent is the leader (the thread that forked it)');
  } finally {
    churn = false;
    await churner;
    killIfRunning([leader.pid!]);
  }
});
