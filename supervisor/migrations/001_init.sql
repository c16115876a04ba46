-- Run history: one row per attempt, its resource samples, every event, and the persisted start queue.
-- Timestamps are integers: milliseconds since the Unix epoch (UTC).

CREATE TABLE runs (
  id               TEXT PRIMARY KEY,          -- sortable: YYYYMMDD-HHMMSS-mmm-<job>-<hex>
  job              TEXT NOT NULL,
  attempt          INTEGER NOT NULL,          -- 1 for the first attempt of a chain
  chain_id         TEXT NOT NULL,             -- id of the chain's first attempt; names the staging file
  pid              INTEGER,
  pid_start_time   TEXT,                      -- field 22 of /proc/<pid>/stat, to tell a reused pid apart
  state            TEXT NOT NULL,
  reason           TEXT,
  detail           TEXT,
  exit_code        INTEGER,
  signal           TEXT,
  queued_at        INTEGER NOT NULL,
  started_at       INTEGER,
  ended_at         INTEGER,
  peak_rss_bytes   INTEGER NOT NULL DEFAULT 0,
  peak_swap_bytes  INTEGER NOT NULL DEFAULT 0,
  progress_done    REAL,
  progress_total   REAL,
  progress_unit    TEXT,
  rows_written     INTEGER,
  bad_messages     INTEGER NOT NULL DEFAULT 0,
  status_note      TEXT,
  next_attempt_at  INTEGER,                   -- when the retry of this run is due (set on the failed run)
  staging_path     TEXT,
  log_path         TEXT,
  result_json      TEXT
);
CREATE INDEX runs_by_job ON runs (job, queued_at);
CREATE INDEX runs_by_state ON runs (state);
CREATE INDEX runs_by_chain ON runs (chain_id);

CREATE TABLE samples (
  run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq          INTEGER NOT NULL,              -- 1.. in arrival order; thinning keeps a subset
  at           INTEGER NOT NULL,
  rss          INTEGER NOT NULL,
  swap         INTEGER NOT NULL,
  cpu          REAL NOT NULL,
  majflt_rate  REAL NOT NULL,
  disk_free    INTEGER NOT NULL,
  procs        INTEGER NOT NULL,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE events (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id       TEXT,
  job          TEXT,
  at           INTEGER NOT NULL,
  kind         TEXT NOT NULL,                 -- state, warning, kill, bad_message, diagnostics, alert, ...
  message      TEXT NOT NULL,
  measured     REAL,
  limit_value  REAL,
  data_json    TEXT
);
CREATE INDEX events_by_run ON events (run_id, id);

CREATE TABLE queue (
  run_id       TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  job          TEXT NOT NULL,
  not_before   INTEGER NOT NULL,
  enqueued_at  INTEGER NOT NULL
);
CREATE INDEX queue_by_due ON queue (not_before, enqueued_at);
