// Scenario 2: the job itself stays small; its child (the grandchild of the supervisor) leaks ~20 MB/s.
// BENCH_LEAK_HEAD_MB is allocated at once, so the tree nears the limit in a couple of seconds and the
// slow part, the one that is measured, starts sooner; BENCH_LEAK_CAP_MB bounds the whole leak.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { logState, treeMemory } from './state-log.mjs';

const MiB = 1024 * 1024;
if (process.argv[2] === 'leaker') {
  const held = [];
  const capBytes = Number(process.env.BENCH_LEAK_CAP_MB ?? 3000) * MiB;
  const headMiB = Number(process.env.BENCH_LEAK_HEAD_MB ?? 0);
  for (let i = 0; i < headMiB; i += 1) held.push(Buffer.alloc(MiB, 1));
  logState('grandchild-rss', treeMemory());
  setInterval(() => {
    if (held.length * MiB < capBytes) held.push(Buffer.alloc(MiB, 1));
    logState('grandchild-rss', treeMemory());
  }, 50);
} else {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'leaker'], { stdio: 'inherit' });
  logState('start', { child: child.pid, ...treeMemory() });
  setInterval(() => logState('rss', treeMemory()), 1000);
}
