-- Job dependency cycles (`after:`): one row per cycle (a --once invocation, a schedule tick of a job with
-- dependents, the daemon's autostart, or `duckvisorctl start --with-deps`), and the cycle each run belongs to.
-- A job is queued when every dependency succeeded in the same cycle; a failed dependency skips its dependents.

ALTER TABLE runs ADD COLUMN cycle_id TEXT;          -- null: a run outside any cycle (plain start, old rows)
CREATE INDEX runs_by_cycle ON runs (cycle_id, job);

CREATE TABLE cycles (
  id           TEXT PRIMARY KEY,
  kind         TEXT NOT NULL,                     -- once, autostart, schedule, with-deps
  root         TEXT,                              -- the job that triggered it (schedule, with-deps); null otherwise
  jobs_json    TEXT NOT NULL,                     -- member job names in dependency order
  started_at   INTEGER NOT NULL,
  ended_at     INTEGER,                           -- null while the cycle is open
  outcome      TEXT                               -- succeeded | failed | abandoned (when ended)
);
CREATE INDEX cycles_open ON cycles (ended_at);
