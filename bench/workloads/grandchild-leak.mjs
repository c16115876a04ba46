// Scenario 2: the job itself stays small; its child (the grandchild of the supervisor) leaks ~20 MB/s.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { logState, treeMemory } from './state-log.mjs';

if (process.argv[2] === 'leaker') {
  const held = [];
  const capBytes = Number(process.env.BENCH_LEAK_CAP_MB ?? 3000) * 1024 * 1024;
  setInterval(() => {
    if (held.length * 1024 * 1024 < capBytes) held.push(Buffer.alloc(1024 * 1024, 1));
    logState('grandchild-rss', treeMemory());
  }, 50);
} else {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'leaker'], { stdio: 'inherit' });
  logState('start', { child: child.pid, ...treeMemory() });
  setInterval(() => logState('rss', treeMemory()), 1000);
}
