// The scrape text carries every series the operator dashboards need, with their labels.
import test from 'ava';
import { DaemonMetrics } from '../supervisor/metrics.js';

test('runs, kills, live gauges, queue, lag and alert deliveries appear with labels', async (t) => {
  const metrics = new DaemonMetrics();
  metrics.recordRunEnd('mlflow-runs', 'succeeded', null);
  metrics.recordRunEnd('mlflow-runs', 'killed', 'memory');
  metrics.recordRunEnd('mlflow-runs', 'killed', 'memory');
  metrics.recordRunEnd('signals', 'failed', 'crash');
  metrics.recordSample('signals', { rss: 123_456_789, swap: 4096 }, { rss: 1_073_741_824, swap: 268_435_456 });
  metrics.setQueue(3);
  metrics.setLive(2);
  metrics.recordSamplingLag(0.012);
  metrics.recordSamplingLag(0.3);
  metrics.recordAlert(true);
  metrics.recordAlert(false);
  metrics.recordAlert(false);

  const text = await metrics.metricsText();
  const has = (line: string) => t.true(text.split('\n').includes(line), `missing: ${line}`);
  has('duckvisor_runs_total{job="mlflow-runs",state="succeeded",reason="none"} 1');
  has('duckvisor_runs_total{job="mlflow-runs",state="killed",reason="memory"} 2');
  has('duckvisor_runs_total{job="signals",state="failed",reason="crash"} 1');
  has('duckvisor_kills_total{job="mlflow-runs",reason="memory"} 2');
  t.false(text.includes('duckvisor_kills_total{job="signals"'), 'a crash is not a kill');
  has('duckvisor_job_rss_bytes{job="signals"} 123456789');
  has('duckvisor_job_swap_bytes{job="signals"} 4096');
  has('duckvisor_job_rss_limit_bytes{job="signals"} 1073741824');
  has('duckvisor_job_swap_limit_bytes{job="signals"} 268435456');
  has('duckvisor_queue_length 3');
  has('duckvisor_live_runs 2');
  has('duckvisor_sampling_lag_seconds_count 2');
  has('duckvisor_sampling_lag_seconds_bucket{le="0.025"} 1');
  has('duckvisor_alert_deliveries_total{result="ok"} 1');
  has('duckvisor_alert_deliveries_total{result="failed"} 2');
  t.regex(text, /^# TYPE duckvisor_runs_total counter$/m);
  t.regex(text, /^duckvisor_daemon_process_resident_memory_bytes \d+/m, 'daemon process metrics');
  t.regex(metrics.contentType, /^text\/plain/);

  metrics.clearJob('signals');
  const after = await metrics.metricsText();
  t.false(after.includes('duckvisor_job_rss_bytes{job="signals"}'), 'live gauges go away with the run');
  t.true(after.includes('duckvisor_runs_total{job="signals",state="failed",reason="crash"} 1'), 'counters stay');
});

test('each instance has its own registry', async (t) => {
  const a = new DaemonMetrics({ processMetrics: false });
  const b = new DaemonMetrics({ processMetrics: false });
  a.setQueue(7);
  t.true((await a.metricsText()).includes('duckvisor_queue_length 7'));
  t.true((await b.metricsText()).includes('duckvisor_queue_length 0'));
  t.false((await b.metricsText()).includes('process_resident_memory_bytes'));
});

test('a limit that is unset is not exported', async (t) => {
  const metrics = new DaemonMetrics({ processMetrics: false });
  metrics.recordSample('j', { rss: 1, swap: 0 }, { rss: 10 });
  const text = await metrics.metricsText();
  t.true(text.includes('duckvisor_job_rss_limit_bytes{job="j"} 10'));
  t.false(text.includes('duckvisor_job_swap_limit_bytes{job="j"}'));
});

test('live gauges hold one entry per job with a live run, read at scrape time, and drop with clearJob', async (t) => {
  const metrics = new DaemonMetrics({ processMetrics: false });
  for (let i = 0; i < 1000; i += 1) metrics.recordSample('busy', { rss: i, swap: 0 }, { rss: 2000 });
  metrics.recordSample('other', { rss: 5, swap: 1 }, {});
  t.is(metrics.liveJobCount, 2, 'samples update the entry in place');
  const text = await metrics.metricsText();
  t.true(text.includes('duckvisor_job_rss_bytes{job="busy"} 999'), 'the latest value is what a scrape sees');
  t.false(text.includes('duckvisor_job_rss_limit_bytes{job="other"}'));
  metrics.clearJob('busy');
  metrics.clearJob('other');
  t.is(metrics.liveJobCount, 0);
  t.false((await metrics.metricsText()).includes('job_rss_bytes{'), 'no series is left for jobs without a live run');
});

test('process metrics come with a coarse event-loop monitor', async (t) => {
  const metrics = new DaemonMetrics({ eventLoopMonitoringPrecisionMs: 100 });
  await new Promise((resolve) => setTimeout(resolve, 250));
  t.regex(await metrics.metricsText(), /^duckvisor_daemon_nodejs_eventloop_lag_p99_seconds \S+/m);
});
