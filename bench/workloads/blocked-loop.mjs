// Scenario 5: speaks the IPC protocol (hello, heartbeats) for BENCH_WORK_MS, then blocks its event loop.
import { logState } from './state-log.mjs';

const workMs = Number(process.env.BENCH_WORK_MS ?? 2000);
process.send?.({ type: 'hello', protocol: 1, extractor: 'bench-blocked', pid: process.pid });
let done = 0;
setInterval(() => {
  process.send?.({ type: 'heartbeat' });
  process.send?.({ type: 'progress', done: ++done, unit: 'items' });
}, 200);
setTimeout(() => {
  logState('blocked');
  for (;;) {
    // A synchronous loop that never yields: a stuck native call or an infinite loop in user code.
  }
}, workMs);
