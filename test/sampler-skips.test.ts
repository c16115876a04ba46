// The reads the sampler skips on an idle host, and why nothing is missed: the births log names every
// process born since the last look (a process of a run is found although no full /proc scan is made), the
// VmSwap rule re-reads swap at least once a second, and ticks between full stat reads still read the
// resident pages (statm).
import test from 'ava';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { BirthLog, MAX_LOOK_GAP_MS, MAX_PROBED_PIDS } from '../supervisor/births.js';
import { PAGE_SIZE, processGroupPidsCached, processGroupScanAt, processStartTime, readPidCursor } from '../supervisor/proc.js';
import { FULL_STAT_READ_MS, GROUP_SCAN_MAX_AGE_MS, ProcessTree, type TreeTotals } from '../supervisor/sample.js';
import { newSwapReadState, noteSwapWalk, SWAP_FULL_READ_MS, swapReadDue } from '../supervisor/swap-reads.js';
import { killIfRunning } from './helpers/job.js';

function births(log: BirthLog, seen: number): Array<{ pid: number; ppid: number; pgrp: number }> {
  const found: Array<{ pid: number; ppid: number; pgrp: number }> = [];
  log.forEachSince(seen, (pid, ppid, pgrp) => found.push({ pid, ppid, pgrp }));
  return found;
}

test('the births log names the processes between two cursors, with parent and group, and leaves threads out', async (t) => {
  const child = spawn('sleep', ['100'], { detached: true, stdio: 'ignore' });
  t.teardown(() => killIfRunning([child.pid!]));
  await sleep(50);
  // A thread of this process: reachable as /proc/<tid> although /proc does not list it.
  const thread = readdirSync('/proc/self/task').map(Number).find((tid) => tid !== process.pid);
  let cursor = child.pid! - 1;
  const log = new BirthLog(() => cursor, 4_194_304);
  log.look(1000);
  t.false(log.complete(-1), 'the first look cannot know what came before it');
  const first = log.generation;
  cursor = child.pid!;
  log.look(1100);
  t.true(log.complete(first));
  t.deepEqual(births(log, first), [{ pid: child.pid!, ppid: process.pid, pgrp: child.pid! }]);
  t.deepEqual(births(log, log.generation), [], 'nothing after the latest generation');

  const seen = log.generation;
  log.look(1200);
  t.is(log.generation, seen, 'a look with the cursor where it was adds no generation');
  if (thread !== undefined) {
    cursor = thread - 1;
    log.look(1250);
    cursor = thread;
    log.look(1300);
    t.false(births(log, log.generation - 1).some((birth) => birth.pid === thread), 'a thread is not a birth');
  }
});

test('a look is inconclusive after a gap, over too many pids, or without a cursor; a wrap-around is followed', async (t) => {
  const child = spawn('sleep', ['100'], { detached: true, stdio: 'ignore' });
  t.teardown(() => killIfRunning([child.pid!]));
  await sleep(50);
  let cursor = 10;
  let now = 0;
  const log = new BirthLog(() => cursor, child.pid! + 5);
  log.look(now);
  let seen = log.generation;
  cursor += MAX_PROBED_PIDS + 1;
  log.look((now += 100));
  t.false(log.complete(seen), 'more pids than a look reads');
  seen = log.generation;
  cursor += 1;
  log.look((now += MAX_LOOK_GAP_MS + 1));
  t.false(log.complete(seen), 'a gap in which the pids may have wrapped around');
  seen = log.generation;
  cursor = Number.NaN;
  log.look((now += 100));
  t.false(log.complete(seen), 'no cursor');
  // Wrap-around: from just below the child's pid over pid_max back to 2 (pid_max is child + 5 here).
  cursor = child.pid! - 1;
  log.look((now += 100));
  seen = log.generation;
  cursor = 2;
  log.look((now += 100));
  t.true(log.complete(seen));
  t.true(births(log, seen).some((birth) => birth.pid === child.pid), 'found across the wrap-around');
});

test('a group member born after the tree was walked is found by the births log, without a new /proc scan', async (t) => {
  // The middle bash exits at once, so the sleep is reparented before a walk can follow a parent link to it.
  const leader = spawn('bash', ['-c', 'read -r _; bash -c "sleep 100 >/dev/null 2>&1 </dev/null &"; exec sleep 100'], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  const tree = new ProcessTree(leader.pid!, processStartTime(leader.pid!)!);
  t.teardown(() => {
    killIfRunning(tree.recorded().keys());
    tree.dispose();
  });
  tree.collect(0);
  tree.collect(GROUP_SCAN_MAX_AGE_MS);
  const scanAt = processGroupScanAt();
  const cursorBefore = readPidCursor();
  leader.stdin!.end('go\n');
  let orphan: number | undefined;
  for (let walk = 0; walk < 100 && orphan === undefined; walk++) {
    await sleep(50);
    orphan = tree.collect(GROUP_SCAN_MAX_AGE_MS).find((member) => member.pid !== leader.pid && member.stat.comm === 'sleep' && member.stat.ppid !== leader.pid)?.pid;
  }
  t.truthy(orphan, 'the orphan was found');
  const lastScanAt = processGroupScanAt();
  const advance = readPidCursor() - cursorBefore;
  if (advance > 0 && advance <= MAX_PROBED_PIDS) t.is(lastScanAt, scanAt, 'no /proc scan was needed');
  else t.log(`pid cursor moved by ${advance} (a wrap-around or a burst): the scan may have been repeated`);
  t.true(processGroupPidsCached(0).get(leader.pid!)?.includes(orphan!), 'it is in the group');
});

test('VmSwap is re-read when the host figure moves, at every tick while the tree has swap, and at least once a second', (t) => {
  const state = newSwapReadState();
  t.false(swapReadDue(state, 0, 0), 'no swap in use on the host: every VmSwap is 0');
  t.true(swapReadDue(state, Number.POSITIVE_INFINITY, 0), 'meminfo unreadable: read');
  t.true(swapReadDue(state, 1000, 0), 'first read');
  noteSwapWalk(state, 1000, 0, true, 0);
  t.false(swapReadDue(state, 1000, 250), 'host figure unchanged, nothing in swap');
  t.true(swapReadDue(state, 2000, 250), 'the host figure moved');
  t.true(swapReadDue(state, 1000, SWAP_FULL_READ_MS), 'a second after the last full read');
  noteSwapWalk(state, 1000, 250, false, 4096);
  t.true(swapReadDue(state, 1000, 500), 'the tree has something in swap');

  // A tree whose VmSwap crosses a limit while the host figure stands still (a page that kept its swap
  // slot going out again): at 250 ms ticks, the first full read after the crossing is at most a second later.
  for (const crossingAt of [1, 125, 249, 250, 251, 999, 1000, 1001]) {
    const ticks = newSwapReadState();
    let caughtAt: number | null = null;
    for (let now = 0; now <= 5000 && caughtAt === null; now += 250) {
      const full = swapReadDue(ticks, 1000, now);
      if (full && now >= crossingAt) caughtAt = now;
      noteSwapWalk(ticks, 1000, now, full, 0);
    }
    t.not(caughtAt, null);
    t.true(caughtAt! - crossingAt <= SWAP_FULL_READ_MS, `crossing at ${crossingAt} ms read at ${caughtAt} ms`);
  }
});

/** A Python child that touches `kib` more KiB of memory at every line on its stdin and prints 'ok'. */
function growingChild(): { child: ReturnType<typeof spawn>; grow: (mib: number) => Promise<void> } {
  const script = [
    'import sys',
    'held = []',
    'for line in sys.stdin:',
    "    held.append(b'x' * (int(line) << 10))",
    "    print('ok', flush=True)",
  ].join('\n');
  const child = spawn('python3', ['-c', script], { detached: true, stdio: ['pipe', 'pipe', 'ignore'] });
  const grow = (kib: number) =>
    new Promise<void>((resolve) => {
      child.stdout!.once('data', () => resolve());
      child.stdin!.write(`${kib}\n`);
    });
  return { child, grow };
}

/** Resident bytes as statm gives them (the exact count; stat's rss field may be the per-CPU approximation). */
function residentBytes(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]) * PAGE_SIZE;
}

// Serial: the births log is process-wide, and another test's looks with its own clock would make these walks full.
test.serial('between full stat reads a tick reads the resident pages from statm; a process whose memory moved is read in full', async (t) => {
  const { child, grow } = growingChild();
  t.teardown(() => killIfRunning([child.pid!]));
  await grow(1024);
  const pid = child.pid!;
  const tree = new ProcessTree(pid, processStartTime(pid)!);
  t.teardown(() => tree.dispose());
  const totals: TreeTotals = { procs: 0, rss: 0, swap: 0, cpuTicks: 0, newFaults: 0, faultsFresh: false };
  const grownBy = async (kib: number, from: number) => {
    await grow(kib);
    for (let waited = 0; residentBytes(pid) < from + (kib - 64) * 1024 && waited < 5000; waited += 20) await sleep(20);
    // Wait until two reads agree, so the read inside measure() and the one after it see a settled figure.
    for (let waited = 0, last = -1; waited < 2000; waited += 30) {
      const now = residentBytes(pid);
      if (now === last) break;
      last = now;
      await sleep(30);
    }
  };
  // The kernel may change the resident pages by itself at any moment (khugepaged collapsing the grown area
  // into huge pages, with THP 'always'): statm is read just before and just after measure(), and what
  // measure() read must lie between the two.
  const measureBetweenReads = (now: number): { low: number; high: number } => {
    const before = residentBytes(pid);
    tree.measure(GROUP_SCAN_MAX_AGE_MS, now, totals);
    const after = residentBytes(pid);
    return { low: Math.min(before, after), high: Math.max(before, after) };
  };
  const agrees = (range: { low: number; high: number }): boolean => totals.rss >= range.low && totals.rss <= range.high;
  const start = Date.now();
  tree.measure(GROUP_SCAN_MAX_AGE_MS, start, totals);
  t.true(totals.faultsFresh, 'the first walk reads full stats');
  const cpuBefore = totals.cpuTicks;

  // 512 KiB more: within the slack, so the tick reads statm only; the RSS is still the current one.
  const small = totals.rss;
  await grownBy(512, small);
  const lightRange = measureBetweenReads(start + 250);
  t.false(totals.faultsFresh, 'a tick 250 ms after a full read is a light one');
  t.is(totals.procs, 1);
  t.true(totals.rss >= small + 448 * 1024, `RSS ${totals.rss} seen grown by 512 KiB from ${small}`);
  t.true(agrees(lightRange), `the light tick read the resident pages of now: ${totals.rss} read, statm ${lightRange.low}-${lightRange.high} around it`);
  t.is(totals.cpuTicks, cpuBefore, 'CPU time stays that of the last full read');

  // 64 MiB more, touched with CPU: the moved process gets its full stat read, CPU time included.
  const big = totals.rss;
  await grownBy(64 * 1024, big);
  const fullRange = measureBetweenReads(start + 500);
  t.true(totals.rss >= big + 60 * 1024 * 1024, `RSS ${totals.rss} seen grown by 64 MiB from ${big}`);
  t.true(agrees(fullRange), `the full read took the resident pages from statm: ${totals.rss} read, statm ${fullRange.low}-${fullRange.high} around it`);
  // That walk was a full one when the process moved; the next full read is due FULL_STAT_READ_MS after the last.
  const lastFullAt = totals.faultsFresh ? start + 500 : start;

  tree.measure(GROUP_SCAN_MAX_AGE_MS, lastFullAt + FULL_STAT_READ_MS, totals);
  t.true(totals.faultsFresh, 'a full read once FULL_STAT_READ_MS has passed');

  const exact = new ProcessTree(pid, processStartTime(pid)!);
  t.teardown(() => exact.dispose());
  exact.exactEveryTick = true;
  exact.measure(GROUP_SCAN_MAX_AGE_MS, start, totals);
  exact.measure(GROUP_SCAN_MAX_AGE_MS, start + 250, totals);
  t.true(totals.faultsFresh, 'a tree with a fault-rate limit reads full stats at every tick');
});

test.serial('a light tick notices that the process is gone', async (t) => {
  const { child, grow } = growingChild();
  t.teardown(() => killIfRunning([child.pid!]));
  await grow(1024);
  const tree = new ProcessTree(child.pid!, processStartTime(child.pid!)!);
  t.teardown(() => tree.dispose());
  const totals: TreeTotals = { procs: 0, rss: 0, swap: 0, cpuTicks: 0, newFaults: 0, faultsFresh: false };
  const start = Date.now();
  tree.measure(GROUP_SCAN_MAX_AGE_MS, start, totals);
  t.is(totals.procs, 1);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  tree.measure(GROUP_SCAN_MAX_AGE_MS, start + 250, totals);
  t.is(totals.procs, 0, 'the reaped process is not counted');
  t.is(totals.rss, 0);
});
