// Human units on the page: the same forms as duckvisorctl (binary byte units, compact durations).

export { formatBytes, formatDuration } from './human-units.js';

/** Integers as is, other numbers with one decimal. */
export function formatNumber(n: number): string {
  return Number.isInteger(n) ? n.toLocaleString('en-US') : n.toFixed(1);
}

/** hh:mm:ss today, else yyyy-mm-dd hh:mm */
export function formatTime(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '-';
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return new Date().toDateString() === d.toDateString() ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time.slice(0, 5)}`;
}

/** Wall-clock duration of a run so far (or in total). */
export function runDurationMs(run: { started_at: string | null; ended_at: string | null }, now = Date.now()): number | null {
  if (!run.started_at) return null;
  return (run.ended_at ? Date.parse(run.ended_at) : now) - Date.parse(run.started_at);
}

/** "state (reason)" */
export function stateLabel(run: { state: string; reason: string | null } | null): string {
  if (!run) return 'never run';
  return run.reason ? `${run.state} (${run.reason})` : run.state;
}
