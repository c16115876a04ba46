// The Run view: one run's facts, a chart of RSS, swap, CPU and progress over its lifetime from the
// stored samples with the limits as dashed lines and the kill marked with its reason, the last log
// lines and the events. A live run is re-read every two seconds.
import { fetchLogTail, fetchRun, fetchStatus } from './api.js';
import { timeChart, type ExtraAxis, type LimitLine, type Marker, type Series } from './chart.js';
import { h, setChildren } from './dom.js';
import { formatBytes, formatDuration, formatNumber, formatTime, runDurationMs, stateLabel } from './format.js';
import { liveStates, type EventRow, type JobStatus, type RunDetail } from './types.js';

const byteReasons = new Set(['memory', 'swap', 'disk']);

function eventReason(event: EventRow): string | null {
  try {
    return (JSON.parse(event.data_json ?? '{}') as { reason?: string }).reason ?? null;
  } catch {
    return null;
  }
}

function formatMeasure(reason: string, value: number | null): string {
  if (value === null) return '-';
  if (byteReasons.has(reason)) return formatBytes(value);
  if (reason === 'thrash') return `${formatNumber(value)} faults/s`;
  return formatDuration(value);
}

/** The kill of the run (its last `kill` event), as a reason and a one-line description. */
export function killOf(detail: RunDetail): { at: number; reason: string; text: string; limit: number | null } | null {
  const kill = [...detail.events].reverse().find((event) => event.kind === 'kill');
  if (kill) {
    const reason = eventReason(kill) ?? detail.run.reason ?? 'unknown';
    const text = kill.measured !== null
      ? `killed (${reason}): ${formatMeasure(reason, kill.measured)} against a limit of ${formatMeasure(reason, kill.limit_value)}`
      : `killed (${reason}): ${kill.message.replace(/^.*?killing \([^)]*\): /, '')}`;
    return { at: Date.parse(kill.at), reason, text, limit: kill.limit_value };
  }
  if (detail.run.state === 'killed' && detail.run.ended_at) {
    const reason = detail.run.reason ?? 'unknown';
    return { at: Date.parse(detail.run.ended_at), reason, text: `killed (${reason})${detail.run.detail ? `: ${detail.run.detail}` : ''}`, limit: null };
  }
  return null;
}

/** The limit for `reason` the run was held to: from its kill or warning events, else the job's current one. */
function limitFor(detail: RunDetail, reason: 'memory' | 'swap', current: number | null | undefined): number | null {
  for (const event of [...detail.events].reverse()) {
    if ((event.kind === 'kill' || event.kind === 'warning') && eventReason(event) === reason && event.limit_value !== null) return event.limit_value;
  }
  return current ?? null;
}

function chartFor(detail: RunDetail, job: JobStatus | undefined, width: number): SVGSVGElement | HTMLElement {
  const samples = detail.samples;
  if (samples.length === 0) return h('p', { class: 'empty' }, 'no samples stored for this run');
  const rss: Series = { name: 'RSS', className: 'series-rss', axis: 'left', points: samples.map((sample) => [sample.at, sample.rss]) };
  const swap: Series = { name: 'swap', className: 'series-swap', axis: 'left', points: samples.map((sample) => [sample.at, sample.swap]) };
  const cpu: Series = { name: 'CPU %', className: 'series-cpu', axis: 'right', points: [] };
  for (let i = 1; i < samples.length; i += 1) {
    const dt = (samples[i]!.at - samples[i - 1]!.at) / 1000;
    if (dt > 0) cpu.points.push([samples[i]!.at, Math.max(0, ((samples[i]!.cpu - samples[i - 1]!.cpu) / dt) * 100)]);
  }
  const progress = progressSeries(detail);
  const limits: LimitLine[] = [];
  const rssLimit = limitFor(detail, 'memory', job?.rss_limit_bytes);
  if (rssLimit) limits.push({ value: rssLimit, axis: 'left', label: `RSS limit ${formatBytes(rssLimit)}`, className: 'limit-rss' });
  const swapLimit = limitFor(detail, 'swap', job?.swap_limit_bytes);
  if (swapLimit) limits.push({ value: swapLimit, axis: 'left', label: `swap limit ${formatBytes(swapLimit)}`, className: 'limit-swap' });
  const first = samples[0]!.at;
  const span = samples.at(-1)!.at - first;
  const markers: Marker[] = [];
  const kill = killOf(detail);
  if (kill) markers.push({ at: kill.at, label: kill.text, className: 'marker-kill' });
  return timeChart({
    width,
    height: 320,
    series: progress ? [rss, swap, cpu, progress.series] : [rss, swap, cpu],
    limits,
    markers,
    formatLeft: formatBytes,
    formatRight: (value) => `${Math.round(value)}%`,
    // Short runs: seconds since the first sample (clock times would repeat); long runs: clock times.
    formatX: (value) => (span < 600_000 ? `+${formatDuration(value - first)}` : formatTime(value)),
    rightMin: 100,
    ...(progress ? { right2: progress.axis } : {}),
  });
}

/**
 * The progress curve from the samples (each carries the run's `done` when it was taken), on its own
 * right-hand axis from 0 to the run's total (or to the highest `done` when the run reports no total).
 */
function progressSeries(detail: RunDetail): { series: Series; axis: ExtraAxis } | null {
  const points: Array<[number, number]> = [];
  for (const sample of detail.samples) if (sample.progress_done !== undefined && sample.progress_done !== null) points.push([sample.at, sample.progress_done]);
  if (points.length === 0) return null;
  const total = detail.run.progress_total;
  const max = total && total > 0 ? total : Math.max(...points.map((point) => point[1]));
  if (!(max > 0)) return null;
  return {
    series: { name: 'progress', className: 'series-progress', axis: 'right2', points },
    axis: { max, format: formatNumber, title: detail.run.progress_unit ?? 'done' },
  };
}

function legend(progressUnit: string | null): HTMLElement {
  const item = (className: string, label: string) => h('span', { class: 'legend-item' }, h('span', { class: `swatch ${className}` }), label);
  return h('div', { class: 'legend' },
    item('series-rss', 'RSS (left)'), item('series-swap', 'swap (left)'), item('series-cpu', 'CPU % (right)'),
    progressUnit !== null ? item('series-progress', `progress in ${progressUnit} (outer right)`) : null,
    item('limit-rss', 'limits'), item('marker-kill', 'kill'));
}

function facts(detail: RunDetail): HTMLElement {
  const run = detail.run;
  const rows: Array<[string, string]> = [
    ['job', run.job],
    ['attempt', `${run.attempt} (chain ${run.chain_id})`],
    ['state', stateLabel(run)],
    ['started', formatTime(run.started_at)],
    ['ended', formatTime(run.ended_at)],
    ['duration', formatDuration(runDurationMs(run))],
    ['progress', run.progress_done === null ? '-' : `${formatNumber(run.progress_done)}${run.progress_total ? ` / ${formatNumber(run.progress_total)}` : ''} ${run.progress_unit ?? ''}`],
    ['rows written', run.rows_written === null ? '-' : formatNumber(run.rows_written)],
    ['peak RSS', formatBytes(run.peak_rss_bytes)],
    ['peak swap', formatBytes(run.peak_swap_bytes)],
    ['exit', run.signal ? `signal ${run.signal}` : run.exit_code === null ? '-' : String(run.exit_code)],
    ['next attempt', formatTime(run.next_attempt_at)],
  ];
  return h('dl', { class: 'facts-list' }, ...rows.flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
}

/** A short message as is; a long or multi-line one (diagnostics) folded under its first line. */
function eventMessage(message: string): HTMLElement | string {
  const firstLine = message.split('\n', 1)[0]!;
  if (message.length <= 240 && !message.includes('\n')) return message;
  return h('details', {}, h('summary', {}, firstLine.length > 200 ? `${firstLine.slice(0, 200)}…` : firstLine), h('pre', { class: 'event-text' }, message));
}

/** Mounts the Run view for `runId`; returns a function that stops its refresh timer. */
export function mountRunView(container: HTMLElement, runId: string): () => void {
  let timer: number | undefined;
  let stopped = false;
  setChildren(container, h('p', { class: 'empty' }, `loading run ${runId}…`));
  const load = async () => {
    try {
      const [detail, status, log] = await Promise.all([fetchRun(runId), fetchStatus(), fetchLogTail(runId, 40).catch(() => [] as string[])]);
      if (stopped) return;
      const job = status.jobs.find((j) => j.job === detail.run.job);
      const kill = killOf(detail);
      // Room for the facts list beside the chart on a wide window; full width otherwise.
      const width = container.clientWidth >= 1100 ? Math.min(1100, container.clientWidth - 380) : Math.max(480, container.clientWidth - 24);
      const progressUnit = detail.samples.some((sample) => sample.progress_done !== undefined && sample.progress_done !== null) ? detail.run.progress_unit ?? 'done' : null;
      setChildren(container,
        h('div', { class: 'run-head' }, h('h1', {}, `Run ${detail.run.id}`), h('span', { class: `badge state-${detail.run.state}`, 'data-field': 'state' }, stateLabel(detail.run))),
        detail.run.detail ? h('p', { class: 'detail' }, detail.run.detail) : null,
        kill ? h('p', { class: 'kill-banner', 'data-field': 'kill' }, kill.text) : null,
        h('div', { class: 'run-body' },
          h('div', { class: 'chart-box' }, chartFor(detail, job, width), legend(progressUnit), h('p', { class: 'hint' }, `${detail.samples.length} stored samples${liveStates.has(detail.run.state) ? ' · live, refreshing every 2 s' : ''}`)),
          facts(detail)),
        h('h2', {}, 'Last log lines'),
        h('pre', { class: 'log', 'data-field': 'log' }, log.length ? log.join('\n') : '(empty log)'),
        h('h2', {}, 'Events'),
        h('table', { class: 'events' },
          h('thead', {}, h('tr', {}, h('th', {}, 'time'), h('th', {}, 'kind'), h('th', {}, 'message'))),
          h('tbody', {}, ...detail.events.slice(-60).reverse().map((event) =>
            h('tr', { class: `event-${event.kind}` }, h('td', {}, formatTime(event.at)), h('td', {}, event.kind), h('td', { class: 'message' }, eventMessage(event.message)))))),
      );
      if (liveStates.has(detail.run.state) || detail.run.state === 'queued') timer = window.setTimeout(() => void load(), 2000);
    } catch (error) {
      if (!stopped) setChildren(container, h('p', { class: 'error' }, `cannot show run ${runId}: ${(error as Error).message}`));
    }
  };
  void load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
