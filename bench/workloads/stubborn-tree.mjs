// Scenario 6: ignores SIGTERM and starts two grandchildren, one of them escaping the process group
// through setsid(1). Logs their pids so the harness can look for survivors.
import { spawn } from 'node:child_process';
import { logState } from './state-log.mjs';

process.on('SIGTERM', () => logState('sigterm-ignored'));
process.on('SIGINT', () => logState('sigint-ignored'));
const inGroup = spawn('sleep', ['100000'], { stdio: 'ignore' });
const escaped = spawn('setsid', ['sleep', '100001'], { stdio: 'ignore' });
setTimeout(() => logState('children', { pids: [inGroup.pid, escaped.pid] }), 200);
setInterval(() => {}, 1 << 30);
