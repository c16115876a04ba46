// The Now view: one card per job with state, live progress, rate/ETA, RSS and swap gauges against the
// limits, the next queued start or retry, and start/stop/restart buttons. Cards are built once per job
// and updated in place on every status event, so nothing flickers and buttons keep their focus.
import { jobAction, type JobAction } from './api.js';
import { h, setChildren } from './dom.js';
import { formatBytes, formatDuration, formatNumber, formatTime, stateLabel } from './format.js';
import { liveStates, type JobStatus, type StatusView } from './types.js';

interface Card {
  root: HTMLElement;
  state: HTMLElement;
  runLink: HTMLAnchorElement;
  bar: HTMLElement;
  barText: HTMLElement;
  rate: HTMLElement;
  eta: HTMLElement;
  uptime: HTMLElement;
  rssBar: HTMLElement;
  rssText: HTMLElement;
  swapBar: HTMLElement;
  swapText: HTMLElement;
  next: HTMLElement;
  note: HTMLElement;
  buttons: Record<JobAction, HTMLButtonElement>;
}

/** Shows the outcome of an action (or its error) in the notice bar. */
export type Notify = (message: string, kind: 'ok' | 'error') => void;

function gauge(): { root: HTMLElement; fill: HTMLElement; text: HTMLElement } {
  const fill = h('div', { class: 'gauge-fill' });
  const text = h('span', { class: 'gauge-text' });
  return { root: h('div', { class: 'gauge' }, fill), fill, text };
}

function setGauge(fill: HTMLElement, text: HTMLElement, value: number | null, limit: number | null | undefined, label: string): void {
  const fraction = value !== null && limit ? Math.min(1, value / limit) : 0;
  fill.style.width = `${(fraction * 100).toFixed(1)}%`;
  fill.classList.toggle('warn', fraction >= 0.8 && fraction < 0.95);
  fill.classList.toggle('danger', fraction >= 0.95);
  text.textContent = `${label} ${formatBytes(value)} / ${limit ? formatBytes(limit) : '∞'}`;
}

function buildCard(job: string, notify: Notify): Card {
  const buttons = {} as Record<JobAction, HTMLButtonElement>;
  for (const action of ['start', 'stop', 'restart'] as const) {
    buttons[action] = h('button', {
      type: 'button',
      class: `action action-${action}`,
      'data-action': action,
      onclick: () => {
        buttons[action].disabled = true;
        jobAction(job, action).then(
          () => notify(`${job}: ${action} requested`, 'ok'),
          (error: Error) => notify(`${job}: ${action} refused: ${error.message}`, 'error'),
        );
      },
    }, action[0]!.toUpperCase() + action.slice(1));
  }
  const state = h('span', { class: 'badge', 'data-field': 'state' });
  const runLink = h('a', { class: 'run-link', 'data-field': 'run' });
  const bar = h('div', { class: 'progress-fill' });
  const barText = h('span', { class: 'progress-text', 'data-field': 'progress' });
  const rate = h('span', { 'data-field': 'rate' });
  const eta = h('span', { 'data-field': 'eta' });
  const uptime = h('span', { 'data-field': 'uptime' });
  const rss = gauge();
  const swap = gauge();
  rss.text.dataset.field = 'rss';
  swap.text.dataset.field = 'swap';
  const next = h('span', { 'data-field': 'next' });
  const note = h('div', { class: 'note', 'data-field': 'note' });
  const root = h('section', { class: 'job-card', 'data-job': job },
    h('div', { class: 'card-head' }, h('h2', {}, job), state, runLink, h('div', { class: 'actions' }, buttons.start, buttons.stop, buttons.restart)),
    h('div', { class: 'progress' }, bar, barText),
    h('div', { class: 'facts' }, h('span', {}, 'rate ', rate), h('span', {}, 'ETA ', eta), h('span', {}, 'uptime ', uptime), h('span', {}, 'next ', next)),
    h('div', { class: 'gauges' }, h('div', { class: 'gauge-row' }, rss.root, rss.text), h('div', { class: 'gauge-row' }, swap.root, swap.text)),
    note,
  );
  return { root, state, runLink, bar, barText, rate, eta, uptime, rssBar: rss.fill, rssText: rss.text, swapBar: swap.fill, swapText: swap.text, next, note, buttons };
}

function updateCard(card: Card, job: JobStatus): void {
  const run = job.run;
  const live = run !== null && liveStates.has(run.state);
  card.root.classList.toggle('live', live);
  card.root.classList.toggle('removed', !job.in_config);
  card.state.textContent = stateLabel(run) + (job.in_config ? '' : ' · removed from config');
  card.state.className = `badge state-${run?.state ?? 'none'}`;
  if (run) {
    card.runLink.textContent = `run ${run.id}`;
    card.runLink.href = `#/run/${encodeURIComponent(run.id)}`;
  } else {
    card.runLink.textContent = '';
    card.runLink.removeAttribute('href');
  }
  const done = run?.progress_done ?? null;
  const total = run?.progress_total ?? null;
  const unit = run?.progress_unit ? ` ${run.progress_unit}` : '';
  if (done !== null && total !== null && total > 0) {
    const pct = Math.min(100, (done / total) * 100);
    card.bar.style.width = `${pct.toFixed(1)}%`;
    card.barText.textContent = `${formatNumber(done)} / ${formatNumber(total)}${unit} (${pct.toFixed(1)}%)`;
  } else {
    card.bar.style.width = done !== null ? '100%' : '0%';
    card.barText.textContent = done !== null ? `${formatNumber(done)}${unit}` : 'no progress reported';
  }
  card.bar.className = `progress-fill state-${run?.state ?? 'none'}${done !== null && (total === null || total <= 0) ? ' indeterminate' : ''}`;
  card.rate.textContent = job.rate !== null ? `${formatNumber(job.rate)}${unit}/s` : '-';
  card.eta.textContent = formatDuration(job.eta_ms);
  card.uptime.textContent = live ? formatDuration(job.uptime_ms) : run?.ended_at ? `ended ${formatTime(run.ended_at)}` : '-';
  setGauge(card.rssBar, card.rssText, live ? job.rss_bytes : run?.peak_rss_bytes ?? null, job.rss_limit_bytes, live ? 'RSS' : 'peak RSS');
  setGauge(card.swapBar, card.swapText, live ? job.swap_bytes : run?.peak_swap_bytes ?? null, job.swap_limit_bytes, live ? 'swap' : 'peak swap');
  const queued = job.queued;
  card.next.textContent = queued ? `${queued.attempt > 1 ? 'retry' : 'start'} ${formatTime(queued.next_attempt_at ?? queued.queued_at)}` : '-';
  card.note.textContent = (run?.status_note ?? (live ? '' : run?.detail ?? '')) || '';
  card.buttons.start.disabled = live;
  card.buttons.stop.disabled = !live && !queued && run?.state !== 'queued';
  card.buttons.restart.disabled = !job.in_config;
}

/** Mounts the Now view; call `update` with each status event. */
export function createNowView(container: HTMLElement, notify: Notify): { update(status: StatusView): void } {
  const cards = new Map<string, Card>();
  const grid = h('div', { class: 'job-grid' });
  const empty = h('p', { class: 'empty' }, 'waiting for the daemon…');
  setChildren(container, h('h1', {}, 'Now'), empty, grid);
  return {
    update(status) {
      empty.hidden = status.jobs.length > 0;
      if (status.jobs.length === 0) empty.textContent = 'no jobs configured';
      const seen = new Set<string>();
      status.jobs.forEach((job, index) => {
        seen.add(job.job);
        let card = cards.get(job.job);
        if (!card) {
          card = buildCard(job.job, notify);
          cards.set(job.job, card);
        }
        if (grid.children[index] !== card.root) grid.insertBefore(card.root, grid.children[index] ?? null);
        updateCard(card, job);
      });
      for (const [name, card] of cards) {
        if (!seen.has(name)) {
          card.root.remove();
          cards.delete(name);
        }
      }
    },
  };
}
