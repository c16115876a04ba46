// Prometheus metrics for the daemon (prom-client, on a private Registry so nothing else leaks in).
//
// How the daemon uses it (call sites):
//   const metrics = new DaemonMetrics();                         // at start
//   metrics.recordSample(job.name, sample, job.limits);          // RunObserver.sample, each sample of a live run
//   metrics.recordRunEnd(job.name, outcome.state, outcome.reason); // each run end (also interrupted/skipped)
//   metrics.clearJob(job.name);                                  // when the job's last live run ended, or the job was removed by reload
//   metrics.setQueue(queue.length); metrics.setLive(live.size);  // whenever either changes, or (better):
//   metrics.readAtScrape({ queueLength: () => scheduler.pending().length, liveRuns: () => live.size }); // once, at start
//   metrics.recordSamplingLag(seconds);                          // sampler: how late a tick ran vs its schedule
//   metrics.recordAlert(delivery.ok);                            // inside the AlertDispatcher `record` callback
//   startHttpServer({ listen, token, handler }, metrics)          // serves metrics.metricsText() on /metrics
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Limits, Sample } from './types.js';

export interface MetricsOptions {
  /** Prefix of every series name. */
  prefix?: string;
  /** Also export the daemon's own process metrics (CPU, RSS, fds, event-loop lag, GC). */
  processMetrics?: boolean;
  /**
   * Resolution of the event-loop delay histogram behind the process metrics, ms. Its timer wakes the loop
   * at this period even when nothing else happens: prom-client's 10 ms default cost ~0.45% of a core.
   */
  eventLoopMonitoringPrecisionMs?: number;
}

/** Default event-loop monitoring resolution, ms (10 wake-ups a second instead of prom-client's 100). */
export const defaultEventLoopMonitoringPrecisionMs = 100;

/** The latest measures of one job's live run, read into the gauges when /metrics is scraped. */
interface LiveJobValues {
  rss: number;
  swap: number;
  rssLimit: number | undefined;
  swapLimit: number | undefined;
}

/** Live values read when /metrics is scraped, instead of pushed on every change. */
export interface ScrapeSources {
  /** Runs waiting for a free slot (the scheduler's pending queue). */
  queueLength?: () => number;
  /** Runs alive now. */
  liveRuns?: () => number;
}

/** Label value for a run that ended without a reason (e.g. succeeded). */
export const noReason = 'none';

/** Why: one object owning every series, so the daemon calls verbs and never touches prom-client directly. */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly #runs: Counter<'job' | 'state' | 'reason'>;
  readonly #kills: Counter<'job' | 'reason'>;
  readonly #rss: Gauge<'job'>;
  readonly #swap: Gauge<'job'>;
  readonly #rssLimit: Gauge<'job'>;
  readonly #swapLimit: Gauge<'job'>;
  readonly #queue: Gauge;
  readonly #live: Gauge;
  readonly #lag: Histogram;
  readonly #alerts: Counter<'result'>;
  #sources: ScrapeSources = {};
  /** Per job with a live run; updated in place at every sample, turned into gauge values only at scrape time. */
  readonly #liveJobs = new Map<string, LiveJobValues>();

  constructor(options: MetricsOptions = {}) {
    const prefix = options.prefix ?? 'duckvisor_';
    const registers = [this.registry];
    this.#runs = new Counter({ name: `${prefix}runs_total`, help: 'Runs that ended, by job, final state and reason.', labelNames: ['job', 'state', 'reason'], registers });
    this.#kills = new Counter({ name: `${prefix}kills_total`, help: 'Runs killed by the supervisor, by job and kill reason.', labelNames: ['job', 'reason'], registers });
    // The live gauges are filled from #liveJobs when scraped: a sample costs a few field writes instead of
    // four label-hashing gauge updates (the sampler reports every live run 4 times a second).
    const liveJobs = this.#liveJobs;
    const liveGauge = (name: string, help: string, pick: (values: LiveJobValues) => number | undefined): Gauge<'job'> =>
      new Gauge({
        name: `${prefix}${name}`,
        help,
        labelNames: ['job'],
        registers,
        collect() {
          this.reset();
          for (const [job, values] of liveJobs) {
            const value = pick(values);
            if (value !== undefined) this.set({ job }, value);
          }
        },
      });
    this.#rss = liveGauge('job_rss_bytes', 'RSS of the live run of a job, summed over its process tree.', (v) => v.rss);
    this.#swap = liveGauge('job_swap_bytes', 'Swap of the live run of a job, summed over its process tree.', (v) => v.swap);
    this.#rssLimit = liveGauge('job_rss_limit_bytes', 'The RSS limit of a job with a live run.', (v) => v.rssLimit);
    this.#swapLimit = liveGauge('job_swap_limit_bytes', 'The swap limit of a job with a live run.', (v) => v.swapLimit);
    // With a scrape source, the value is read when /metrics is served, so it cannot go stale between run state changes.
    const readSource = (gauge: Gauge, source: (() => number) | undefined) => {
      if (!source) return;
      try {
        const value = source();
        if (Number.isFinite(value)) gauge.set(value);
      } catch {
        // Keep the last value: a failing source must not break the scrape.
      }
    };
    const sources = () => this.#sources;
    this.#queue = new Gauge({
      name: `${prefix}queue_length`,
      help: 'Runs waiting for a free slot.',
      registers,
      collect() {
        readSource(this, sources().queueLength);
      },
    });
    this.#live = new Gauge({
      name: `${prefix}live_runs`,
      help: 'Runs alive now (starting, running or publishing).',
      registers,
      collect() {
        readSource(this, sources().liveRuns);
      },
    });
    this.#lag = new Histogram({
      name: `${prefix}sampling_lag_seconds`,
      help: 'How late a sampling tick ran compared to its schedule.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.#alerts = new Counter({ name: `${prefix}alert_deliveries_total`, help: 'Alert delivery attempts, by result (ok, failed).', labelNames: ['result'], registers });
    // Start both results at zero so rate() works before the first failure.
    this.#alerts.inc({ result: 'ok' }, 0);
    this.#alerts.inc({ result: 'failed' }, 0);
    this.#queue.set(0);
    this.#live.set(0);
    if (options.processMetrics ?? true) {
      collectDefaultMetrics({
        register: this.registry,
        prefix: `${prefix}daemon_`,
        eventLoopMonitoringPrecision: options.eventLoopMonitoringPrecisionMs ?? defaultEventLoopMonitoringPrecisionMs,
      });
    }
  }

  /** A run ended: counts it, and counts a kill when the supervisor killed it. */
  recordRunEnd(job: string, state: string, reason: string | null): void {
    this.#runs.inc({ job, state, reason: reason ?? noReason });
    if (state === 'killed') this.#kills.inc({ job, reason: reason ?? noReason });
  }

  /** The latest sample of a job's live run, with the limits it is held to (kept in memory until a scrape). */
  recordSample(job: string, sample: Pick<Sample, 'rss' | 'swap'>, limits: Pick<Limits, 'rss' | 'swap'>): void {
    const values = this.#liveJobs.get(job);
    if (values) {
      values.rss = sample.rss;
      values.swap = sample.swap;
      values.rssLimit = limits.rss;
      values.swapLimit = limits.swap;
    } else {
      this.#liveJobs.set(job, { rss: sample.rss, swap: sample.swap, rssLimit: limits.rss, swapLimit: limits.swap });
    }
  }

  /** Drops a job's live gauges (no live run any more, or the job was removed). Counters are kept. */
  clearJob(job: string): void {
    this.#liveJobs.delete(job);
    for (const gauge of [this.#rss, this.#swap, this.#rssLimit, this.#swapLimit]) gauge.remove({ job });
  }

  /** Number of jobs whose live gauges are held (bounded by the jobs with a live run). */
  get liveJobCount(): number {
    return this.#liveJobs.size;
  }

  /** Reads the queue length and live-run count from the daemon at every scrape (setQueue/setLive then only matter between scrapes). */
  readAtScrape(sources: ScrapeSources): void {
    this.#sources = { ...sources };
  }

  setQueue(length: number): void {
    this.#queue.set(length);
  }

  setLive(count: number): void {
    this.#live.set(count);
  }

  recordSamplingLag(seconds: number): void {
    this.#lag.observe(Math.max(0, seconds));
  }

  recordAlert(ok: boolean): void {
    this.#alerts.inc({ result: ok ? 'ok' : 'failed' });
  }

  /** The Prometheus text exposition of every series. */
  metricsText(): Promise<string> {
    return this.registry.metrics();
  }

  /** Content-Type to serve metricsText() with. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
