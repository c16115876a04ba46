// Scenario 1: RSS grows ~100 MB/s (1 MiB every 10 ms, touched) until BENCH_LEAK_CAP_MB, then idles.
import { logState, treeMemory } from './state-log.mjs';

const stepBytes = 1024 * 1024;
const capBytes = Number(process.env.BENCH_LEAK_CAP_MB ?? 3000) * 1024 * 1024;
const held = [];
logState('start', treeMemory());
const timer = setInterval(() => {
  if (held.length * stepBytes < capBytes) held.push(Buffer.alloc(stepBytes, 1));
  logState('rss', treeMemory());
}, 10);
process.on('SIGINT', () => {});
void timer;
