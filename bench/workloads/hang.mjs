// Scenario 4: prints [HEARTBEAT] n/total progress for BENCH_WORK_MS, then stays alive doing nothing.
import { logState } from './state-log.mjs';

const workMs = Number(process.env.BENCH_WORK_MS ?? 2000);
const total = 1000;
let done = 0;
const started = Date.now();
const timer = setInterval(() => {
  if (Date.now() - started > workMs) {
    clearInterval(timer);
    logState('hang');
    setInterval(() => {}, 1 << 30);
    return;
  }
  done += 1;
  console.log(`[HEARTBEAT] ${done}/${total}`);
  if (process.send) process.send({ type: 'progress', done, total, unit: 'items' });
  logState('progress', { done });
}, 100);
if (process.send) process.send({ type: 'hello', protocol: 1, extractor: 'bench-hang', pid: process.pid });
setInterval(() => process.send?.({ type: 'heartbeat' }), 500);
