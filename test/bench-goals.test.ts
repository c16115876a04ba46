// The peer bench's goal verdicts (bench/peers): the overhead goal is "≤ 1% of one core for 50 children,
// and below PM2", so both halves are judged, the second only when PM2 was measured in the same run; a quick
// run (10 children, a 10 s window) does not judge it at all.
import test from 'ava';
import { renderTable, type Cell } from '../bench/peers/report.js';
import { scenarios, type TrialResult } from '../bench/peers/scenarios.js';

const overhead = scenarios.find((scenario) => scenario.id === 'overhead')!;

function cpu(...percents: number[]): TrialResult[] {
  return percents.map((cpuPercent) => ({ caught: true, cpuPercent, startupCpuPercent: 0, supervisorRss: 70 * 1024 * 1024, windowMs: 60_000 }));
}

test('the overhead goal needs ≤ 1% and less CPU than PM2 (medians)', (t) => {
  t.true(overhead.goalMet(cpu(0.6, 0.8, 0.7), new Map([['pm2', cpu(2.0, 2.1, 2.2)]])));
  t.false(overhead.goalMet(cpu(0.6, 0.8, 0.7), new Map([['pm2', cpu(0.3, 0.5, 0.4)]])), 'below 1% but above PM2');
  t.false(overhead.goalMet(cpu(1.2, 1.1, 1.3), new Map([['pm2', cpu(2.0)]])), 'below PM2 but above 1%');
  t.true(overhead.goalMet(cpu(0.7), new Map()), 'PM2 not measured: only the 1% half is judged');
  t.false(overhead.goalMet([], new Map([['pm2', cpu(2.0)]])), 'nothing measured');
});

test('the report says met, NOT met, or not judged in a quick run', (t) => {
  const cells = (ours: number, pm2: number): Cell[] => [
    { driver: 'duckvisor', results: cpu(ours) },
    { driver: 'pm2', results: cpu(pm2) },
  ];
  t.regex(renderTable(overhead, cells(0.4, 2.0)), /— \*\*met\*\*\./);
  t.regex(renderTable(overhead, cells(1.0, 0.5)), /— \*\*NOT met\*\*\./);
  t.regex(renderTable(overhead, cells(0.4, 2.0), { quick: true }), /— \*\*not judged: a quick run supervises 10 children/);
  // Scenarios whose goal a quick run measures as stated are still judged.
  const fastLeak = scenarios.find((scenario) => scenario.id === 'fast-leak')!;
  const leak = (latencyMs: number): Cell[] => [{ driver: 'duckvisor', results: [{ caught: true, latencyMs, peakBytes: 203 * 1024 * 1024, windowMs: 10_000 }] }];
  t.regex(renderTable(fastLeak, leak(40), { quick: true }), /— \*\*met\*\*\./);
  t.regex(renderTable(fastLeak, leak(900), { quick: true }), /— \*\*NOT met\*\*\./);
});
