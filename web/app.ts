// The page's entry point: hash routing (#/now, #/run/<id>, #/history?job=&state=&reason=), one live
// status stream for the whole page, the daemon line in the header and the notice bar for actions.
import { openStatusStream } from './api.js';
import { h } from './dom.js';
import { formatDuration } from './format.js';
import { mountHistoryView } from './history.js';
import { createNowView } from './now.js';
import { mountRunView } from './run.js';
import type { StatusView } from './types.js';

const view = document.getElementById('view')!;
const daemonLine = document.getElementById('daemon-line')!;
const liveDot = document.getElementById('live-dot')!;
const notice = document.getElementById('notice')!;

let latest: StatusView | null = null;
let unmount: () => void = () => {};
let nowView: { update(status: StatusView): void } | null = null;
let noticeTimer: number | undefined;

function notify(message: string, kind: 'ok' | 'error'): void {
  notice.replaceChildren(h('span', {}, message), h('button', { type: 'button', class: 'close', onclick: () => (notice.hidden = true) }, '×'));
  notice.className = `notice ${kind}`;
  notice.hidden = false;
  window.clearTimeout(noticeTimer);
  if (kind === 'ok') noticeTimer = window.setTimeout(() => (notice.hidden = true), 4000);
}

function showDaemon(status: StatusView): void {
  const d = status.daemon;
  const up = formatDuration(Date.now() - Date.parse(d.started_at));
  daemonLine.textContent = `duckvisord pid ${d.pid} · up ${up} · ${d.live} live / ${d.concurrency} · ${d.queued} queued${d.shutting_down ? ' · SHUTTING DOWN' : ''}`;
}

function route(): void {
  unmount();
  unmount = () => {};
  nowView = null;
  const hash = location.hash || '#/now';
  const [pathPart, queryPart] = hash.slice(1).split('?', 2) as [string, string | undefined];
  const parts = pathPart.split('/').filter(Boolean);
  for (const link of document.querySelectorAll<HTMLAnchorElement>('[data-nav]')) link.classList.toggle('active', link.dataset.nav === parts[0]);
  if (parts[0] === 'run' && parts[1]) {
    unmount = mountRunView(view, decodeURIComponent(parts[1]));
    document.title = `run ${decodeURIComponent(parts[1])} · duckvisor`;
  } else if (parts[0] === 'history') {
    const query = new URLSearchParams(queryPart ?? '');
    unmount = mountHistoryView(view, { job: query.get('job') ?? '', state: query.get('state') ?? '', reason: query.get('reason') ?? '' });
    document.title = 'history · duckvisor';
  } else {
    if (parts[0] !== 'now') history.replaceState(null, '', '#/now');
    nowView = createNowView(view, notify);
    if (latest) nowView.update(latest);
    document.title = 'now · duckvisor';
  }
}

openStatusStream(
  (status) => {
    latest = status;
    showDaemon(status);
    nowView?.update(status);
  },
  (connected, problem) => {
    liveDot.classList.toggle('on', connected);
    liveDot.title = connected ? 'live updates' : `not connected${problem ? `: ${problem}` : ''}, retrying`;
    if (!connected && !latest) daemonLine.textContent = problem ? `daemon problem: ${problem}` : 'connecting…';
  },
);
window.addEventListener('hashchange', route);
route();
