// Scrape-time gauges: the queue length and live-run count are read from the daemon when /metrics is
// served, so a run queued without any run changing state is still counted.
import test from 'ava';
import { DaemonMetrics } from '../supervisor/metrics.js';

const line = (text: string, name: string) => new RegExp(`^duckvisor_${name} (\\S+)$`, 'm').exec(text)?.[1];

test('queue_length and live_runs come from the scrape sources at every scrape', async (t) => {
  const metrics = new DaemonMetrics({ processMetrics: false });
  let queued = 0;
  let live = 0;
  metrics.readAtScrape({ queueLength: () => queued, liveRuns: () => live });
  t.is(line(await metrics.metricsText(), 'queue_length'), '0');
  queued = 3;
  live = 2;
  const text = await metrics.metricsText();
  t.is(line(text, 'queue_length'), '3');
  t.is(line(text, 'live_runs'), '2');
  // A pushed value is overridden by the source at the next scrape.
  metrics.setQueue(9);
  t.is(line(await metrics.metricsText(), 'queue_length'), '3');
});

test('without sources the pushed values are served; a throwing or non-finite source keeps the last value', async (t) => {
  const metrics = new DaemonMetrics({ processMetrics: false });
  metrics.setQueue(4);
  metrics.setLive(1);
  t.is(line(await metrics.metricsText(), 'queue_length'), '4');
  metrics.readAtScrape({
    queueLength: () => {
      throw new Error('scheduler closed');
    },
    liveRuns: () => Number.NaN,
  });
  const text = await metrics.metricsText();
  t.is(line(text, 'queue_length'), '4');
  t.is(line(text, 'live_runs'), '1');
});
