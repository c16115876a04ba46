#!/usr/bin/env python3
"""The way users extract MLflow into DuckDB today (the seed's scripts, after their streaming fix): the
MLflow client (search_runs, get_metric_history per run and key, list_artifacts + download_artifacts)
and DuckDB Python inserts with executemany in batches of 1000. The baseline of bench/extract.ts.

  .venv/bin/python bench/python-way.py --tool runs|metric-history|artifacts --uri URI --out OUT.duckdb
                                       [--glob 'signals/csv/*.csv'] [--filter "params.imputation_method = 'SAITS'"]

  --tool runs            runs(run_id, experiment_id, run_name, status, start_time, end_time), params, tags,
                         latest_metrics from search_runs (the data the mlflow-runs extractor writes)
  --tool metric-history  metric_history(run_id, key, step, timestamp, value): get_metric_history per run/key
  --tool artifacts       artifacts(run_id, path, size) from list_artifacts, and the rows of every artifact
                         matching --glob (pandas.read_csv on the downloaded file) into table `signals`

Prints "[HEARTBEAT] <runs done>/<runs> rows=<n>" lines on stderr (so a timed-out run still says how far
it got) and one JSON line {"tool", "runs", "rows", "seconds"} on stdout at the end.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
os.environ["GIT_PYTHON_REFRESH"] = "quiet"

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

BATCH_SIZE = 1000


class BatchedTable:
    """The seed's 'CORRECT: stream inserts' pattern: a batch list flushed with executemany every 1000 rows."""

    def __init__(self, con: duckdb.DuckDBPyConnection, name: str, columns: str):
        self.con = con
        placeholders = ", ".join("?" for _ in columns.split(","))
        con.execute(f"CREATE TABLE {name} ({columns})")
        self.sql = f"INSERT INTO {name} VALUES ({placeholders})"
        self.batch: list[tuple] = []
        self.rows = 0

    def add(self, row: tuple) -> None:
        self.batch.append(row)
        if len(self.batch) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.con.executemany(self.sql, self.batch)
            self.rows += len(self.batch)
            self.batch.clear()


def all_runs(client: MlflowClient, filter_string: str = ""):
    for exp in client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000):
        page = None
        while True:
            runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=page,
                                      filter_string=filter_string)
            yield from runs
            page = runs.token
            if not page:
                break


def list_files(client: MlflowClient, run_id: str, path: str | None = None):
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            yield from list_files(client, run_id, info.path)
        else:
            yield info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", choices=["runs", "metric-history", "artifacts"], required=True)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--glob", default="signals/csv/*.csv")
    parser.add_argument("--filter", default="", help="an MLflow search filter for the runs (e.g. \"params.imputation_method = 'SAITS'\")")
    args = parser.parse_args()
    began = time.monotonic()
    client = MlflowClient(args.uri)
    con = duckdb.connect(args.out)
    runs = list(all_runs(client, args.filter))  # search_runs: the run listing with params, tags and latest metrics
    tables: list[BatchedTable] = []
    last_beat = 0.0

    def beat(done: int) -> None:
        nonlocal last_beat
        if time.monotonic() - last_beat >= 2 or done == len(runs):
            last_beat = time.monotonic()
            rows = sum(t.rows + len(t.batch) for t in tables)
            print(f"[HEARTBEAT] {done}/{len(runs)} rows={rows} ({last_beat - began:.1f} s)", file=sys.stderr, flush=True)

    if args.tool == "runs":
        runs_table = BatchedTable(con, "runs", "run_id VARCHAR, experiment_id VARCHAR, run_name VARCHAR, status VARCHAR, start_time BIGINT, end_time BIGINT")
        params = BatchedTable(con, "params", "run_id VARCHAR, key VARCHAR, value VARCHAR")
        tags = BatchedTable(con, "tags", "run_id VARCHAR, key VARCHAR, value VARCHAR")
        latest = BatchedTable(con, "latest_metrics", "run_id VARCHAR, key VARCHAR, value DOUBLE")
        tables += [runs_table, params, tags, latest]
        for done, run in enumerate(runs, 1):
            info = run.info
            runs_table.add((info.run_id, info.experiment_id, info.run_name, info.status, info.start_time, info.end_time))
            for key, value in run.data.params.items():
                params.add((info.run_id, key, value))
            for key, value in run.data.tags.items():
                tags.add((info.run_id, key, value))
            for key, value in run.data.metrics.items():
                latest.add((info.run_id, key, value))
            beat(done)
    elif args.tool == "metric-history":
        history = BatchedTable(con, "metric_history", "run_id VARCHAR, key VARCHAR, step BIGINT, timestamp BIGINT, value DOUBLE")
        tables.append(history)
        for done, run in enumerate(runs, 1):
            for key in run.data.metrics:
                for m in client.get_metric_history(run.info.run_id, key):
                    history.add((run.info.run_id, key, m.step, m.timestamp, m.value))
            beat(done)
    else:
        listing = BatchedTable(con, "artifacts", "run_id VARCHAR, path VARCHAR, size BIGINT")
        signals = BatchedTable(con, "signals", "run_id VARCHAR, artifact_path VARCHAR, row BIGINT, t BIGINT, original DOUBLE, reconstructed DOUBLE")
        tables += [listing, signals]
        for done, run in enumerate(runs, 1):
            run_id = run.info.run_id
            for info in list_files(client, run_id):
                listing.add((run_id, info.path, info.file_size))
                if fnmatch.fnmatch(info.path, args.glob):
                    frame = pd.read_csv(client.download_artifacts(run_id, info.path))
                    for row, (t, original, reconstructed) in enumerate(frame[["t", "original", "reconstructed"]].itertuples(index=False)):
                        signals.add((run_id, info.path, row, int(t), float(original), float(reconstructed)))
            beat(done)
    for table in tables:
        table.flush()
    con.close()
    rows = sum(t.rows for t in tables)
    beat(len(runs))
    print(json.dumps(dict(tool=args.tool, runs=len(runs), rows=rows, seconds=round(time.monotonic() - began, 2))), flush=True)


if __name__ == "__main__":
    main()
