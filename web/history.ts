// The History view: runs filterable by job, state and reason (kept in the address), one small chart
// per job of run durations over time coloured by outcome, and a table that links to each run.
import { fetchHistory, fetchStatus } from './api.js';
import { outcomeChart } from './chart.js';
import { h, setChildren } from './dom.js';
import { formatBytes, formatDuration, formatTime, runDurationMs, stateLabel } from './format.js';
import { killReasons, runStates, type RunView } from './types.js';

export interface HistoryFilter {
  job: string;
  state: string;
  reason: string;
}

function select(name: string, options: readonly string[], value: string, onChange: (value: string) => void): HTMLSelectElement {
  const element = h('select', { name, 'data-filter': name, onchange: () => onChange(element.value) },
    h('option', { value: '' }, `any ${name}`), ...options.map((option) => h('option', { value: option, selected: option === value }, option)));
  return element;
}

/** Mounts the History view with `filter`; changing a filter rewrites the address (#/history?job=…). */
export function mountHistoryView(container: HTMLElement, filter: HistoryFilter): () => void {
  let stopped = false;
  setChildren(container, h('p', { class: 'empty' }, 'loading history…'));
  const navigate = (next: Partial<HistoryFilter>) => {
    const merged = { ...filter, ...next };
    const query = new URLSearchParams(Object.entries(merged).filter(([, v]) => v !== ''));
    location.hash = `#/history${query.size ? `?${query}` : ''}`;
  };
  void (async () => {
    try {
      const [{ runs }, status] = await Promise.all([
        fetchHistory({ job: filter.job, state: filter.state, reason: filter.reason, limit: 500 }),
        fetchStatus(),
      ]);
      if (stopped) return;
      const jobs = [...new Set([...status.jobs.map((j) => j.job), ...runs.map((r) => r.job)])].sort();
      const byJob = new Map<string, RunView[]>();
      for (const run of runs) byJob.set(run.job, [...(byJob.get(run.job) ?? []), run]);
      const charts = [...byJob.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([job, jobRuns]) => {
        const dots = jobRuns.filter((run) => run.started_at).map((run) => ({
          at: Date.parse(run.started_at!),
          durationMs: runDurationMs(run) ?? 0,
          state: run.state,
          title: `${run.id}: ${stateLabel(run)}, ${formatDuration(runDurationMs(run))}`,
          onClick: () => (location.hash = `#/run/${encodeURIComponent(run.id)}`),
        }));
        const counts = new Map<string, number>();
        for (const run of jobRuns) counts.set(run.state, (counts.get(run.state) ?? 0) + 1);
        return h('div', { class: 'job-chart', 'data-job': job },
          h('h3', {}, job),
          dots.length ? outcomeChart(dots, 340, 90, formatDuration) : h('p', { class: 'empty' }, 'no started runs'),
          h('p', { class: 'counts' }, ...[...counts.entries()].map(([state, n]) => h('span', { class: `badge state-${state}` }, `${n} ${state}`))));
      });
      setChildren(container,
        h('h1', {}, 'History'),
        h('div', { class: 'filters' },
          select('job', jobs, filter.job, (job) => navigate({ job })),
          select('state', runStates, filter.state, (state) => navigate({ state })),
          select('reason', killReasons, filter.reason, (reason) => navigate({ reason })),
          h('span', { class: 'hint' }, `${runs.length} run(s)${runs.length === 500 ? ' (newest 500)' : ''}`)),
        h('div', { class: 'job-charts' }, ...charts),
        h('table', { class: 'runs' },
          h('thead', {}, h('tr', {}, ...['run', 'job', 'attempt', 'state', 'started', 'duration', 'peak RSS', 'detail'].map((c) => h('th', {}, c)))),
          h('tbody', {}, ...runs.map((run) =>
            h('tr', { class: `state-row-${run.state}`, 'data-run': run.id },
              h('td', {}, h('a', { href: `#/run/${encodeURIComponent(run.id)}` }, run.id)),
              h('td', {}, run.job),
              h('td', {}, String(run.attempt)),
              h('td', {}, h('span', { class: `badge state-${run.state}` }, stateLabel(run))),
              h('td', {}, formatTime(run.started_at)),
              h('td', {}, formatDuration(runDurationMs(run))),
              h('td', {}, formatBytes(run.peak_rss_bytes)),
              h('td', { class: 'detail-cell' }, (run.detail ?? '').slice(0, 120)))))),
      );
    } catch (error) {
      if (!stopped) setChildren(container, h('p', { class: 'error' }, `cannot read the history: ${(error as Error).message}`));
    }
  })();
  return () => {
    stopped = true;
  };
}
