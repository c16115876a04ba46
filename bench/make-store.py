#!/usr/bin/env python3
"""Benchmark MLflow stores at the seed's scale (and N times that), in the file-store and SQLite forms.

CLI (run with the project venv, which has mlflow, numpy, pandas, pyarrow):

  .venv/bin/python bench/make-store.py --out bench/work/stores/seed-1x                 # 1x, both forms, fast writer
  .venv/bin/python bench/make-store.py --out bench/work/stores/seed-10x --scale 10     # 10x the runs
  .venv/bin/python bench/make-store.py --out DIR --profile tiny --writer client --forms filestore
      --profile seed|tiny   seed: the seed's experiments (default); tiny: the same shape, a few runs (tests)
      --scale N             N replicates of every run (param `replicate` = 0..N-1); default 1
      --forms LIST          filestore,sqlite (default both)
      --writer fast|client  fast: direct writer (default); client: the real MlflowClient (slow; the reference)
      --seed N              data seed (default 20260201); same seed + profile + scale => same store

Output layout (both forms share the artifact files and the run ids):
  DIR/mlruns/<exp>/<run>/{meta.yaml,params/,tags/,metrics/,artifacts/}   file store (MLFLOW 3.x layout)
  DIR/mlflow.db                                                          SQLite store; its runs' artifact_uri
                                                                         is DIR/mlruns/<exp>/<run>/artifacts
  DIR/store.json                                                         what was written (counts, ids, options)
The client writer with both forms writes DIR/filestore/mlruns and DIR/sqlite/{mlflow.db,mlruns} (one client
per store); the fast writer writes both forms into DIR itself.

What is in a store (profile seed, scale 1; every count times --scale):
  experiment 253031330985650090 "classification": 410 runs, params outlier_method × imputation_method ×
    classifier × featurization (+ model/*, n_subjects, replicate); metrics AUROC, Brier, calibration/slope,
    calibration/intercept (one point) and histories train/loss, val/AUROC, val/Brier (50–200 steps each);
    artifact predictions/test.parquet (507 rows: subject, y_true, y_prob).
  experiment 940304421003085572 "imputation": 136 runs (MOMENT 6 variants × 15 outlier methods, SAITS, CSDI,
    TimesNet × 15, one ensemble); metrics mae, rmse + history train/loss (50–200 steps); artifacts
    signals/csv/S000.csv … S506.csv (per-subject reconstructed signal: t, original, reconstructed; 32 samples).

The fast writer produces what the real client produces: meta.yaml through MLflow's own RunInfo dict and
YAML settings, metric lines as the file store formats them, and for SQLite the schema (and the
experiments) created by the real client, then the runs bulk-inserted into its tables (runs, tags,
params, metrics, latest_metrics). test/bench-store.test.ts proves it: both writers, read back by the
MLflow client, give identical experiments, runs, params, tags, metric histories and artifact listings.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ["GIT_PYTHON_REFRESH"] = "quiet"

import numpy as np  # noqa: E402

CLASSIFICATION_ID = "253031330985650090"
IMPUTATION_ID = "940304421003085572"
T0 = 1_738_368_000_000  # 2025-02-01T00:00:00Z in ms
USER = "bench"
SIGNAL_LEN = 32

OUTLIERS = ["LOF", "IsolationForest", "OneClassSVM", "EllipticEnvelope", "DBSCAN", "MAD", "IQR", "zscore", "HampelFilter",
            "MOMENT-AD", "TimesNet-AD", "UniTS-AD", "ensemble-AD", "manual", "none"]
IMPUTATIONS = ["MOMENT-zeroshot", "MOMENT-finetune", "SAITS", "CSDI", "TimesNet", "linear", "ensemble"]
CLASSIFIERS = ["CatBoost", "LogReg"]
FEATURIZATIONS = ["handcrafted", "embeddings"]
MOMENT_VARIANTS = ["MOMENT-small-zs", "MOMENT-base-zs", "MOMENT-large-zs", "MOMENT-small-ft", "MOMENT-base-ft", "MOMENT-large-ft"]

PROFILES = {
    "seed": dict(classification_runs=410, outliers=OUTLIERS, subjects=507, predictions=507, steps=(50, 200)),
    "tiny": dict(classification_runs=6, outliers=OUTLIERS[:2], subjects=4, predictions=12, steps=(5, 12)),
}


@dataclass
class RunSpec:
    experiment_id: str
    index: int
    run_id: str
    run_name: str
    start_time: int
    end_time: int
    params: list[tuple[str, str]]
    tags: list[tuple[str, str]]
    metrics: list[tuple[str, float, int, int]]  # key, value, timestamp, step
    artifacts: Callable[[], Iterator[tuple[str, bytes]]] = field(repr=False)


@dataclass
class ExperimentSpec:
    experiment_id: str
    name: str
    tags: dict[str, str]


EXPERIMENTS = [
    ExperimentSpec(CLASSIFICATION_ID, "classification", {"mlflow.note.content": "outlier × imputation × classifier × featurization"}),
    ExperimentSpec(IMPUTATION_ID, "imputation", {"mlflow.note.content": "per-subject reconstructed signals"}),
]


def run_id_for(seed: int, experiment_id: str, index: int) -> str:
    """A uuid4-shaped hex id that depends only on (seed, experiment, run index): both writers use it."""
    rng = np.random.default_rng([seed, int(experiment_id) % (2**32), index])
    bits = int.from_bytes(rng.bytes(16), "big")
    return uuid.UUID(int=bits, version=4).hex


def history(rng: np.random.Generator, key: str, start: float, steps: int, t: int) -> list[tuple[str, float, int, int]]:
    values = start * np.cumprod(rng.uniform(0.9, 1.0, size=steps)) if key.endswith("loss") else start * (1 - 0.5 ** (np.arange(steps) / 10 + 1))
    return [(key, float(v), t + 100 * s, s) for s, v in enumerate(values)]


def classification_runs(profile: dict, scale: int, seed: int) -> Iterator[RunSpec]:
    combos = [(o, i, c, f) for o in profile["outliers"] for i in IMPUTATIONS for c in CLASSIFIERS for f in FEATURIZATIONS]
    keep = sorted(np.random.default_rng([seed, 1]).choice(len(combos), size=min(profile["classification_runs"], len(combos)), replace=False))
    index = 0
    for replicate in range(scale):
        for k in keep:
            outlier, imputation, classifier, featurization = combos[k]
            rng = np.random.default_rng([seed, 2, index])
            start = T0 + index * 60_000
            steps = int(rng.integers(profile["steps"][0], profile["steps"][1] + 1))
            auroc = float(rng.uniform(0.6, 0.95))
            brier = float(rng.uniform(0.05, 0.25))
            metrics = [("AUROC", auroc, start + 1000, 0), ("Brier", brier, start + 1000, 0),
                       ("calibration/slope", float(rng.uniform(0.7, 1.3)), start + 1000, 0),
                       ("calibration/intercept", float(rng.normal(0, 0.1)), start + 1000, 0)]
            metrics += history(rng, "train/loss", 1.0, steps, start + 2000)
            metrics += history(rng, "val/AUROC", auroc, steps, start + 2000)
            metrics += history(rng, "val/Brier", brier * 2, steps, start + 2000)
            params = [("outlier_method", outlier), ("imputation_method", imputation), ("classifier", classifier),
                      ("featurization", featurization), ("replicate", str(replicate)), ("n_subjects", str(profile["subjects"]))]
            params += [("model/depth", str(int(rng.integers(3, 9)))), ("model/lr", str(round(float(rng.uniform(0.01, 0.3)), 4)))] if classifier == "CatBoost" \
                else [("model/C", str(round(float(rng.uniform(0.01, 10)), 4))), ("model/penalty", "l2")]
            suffix = f"__r{replicate}" if scale > 1 else ""
            n = profile["predictions"]
            y_true = rng.integers(0, 2, size=n)
            y_prob = np.clip(y_true * (auroc - 0.5) + rng.uniform(0, 1 - (auroc - 0.5), size=n), 0, 1)

            def artifacts(y_true=y_true, y_prob=y_prob) -> Iterator[tuple[str, bytes]]:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.table({"subject": [f"S{s:03d}" for s in range(len(y_true))], "y_true": y_true.astype("int64"), "y_prob": y_prob})
                sink = io.BytesIO()
                pq.write_table(table, sink)
                yield "predictions/test.parquet", sink.getvalue()

            yield RunSpec(CLASSIFICATION_ID, index, run_id_for(seed, CLASSIFICATION_ID, index), f"{outlier}__{imputation}__{classifier}__{featurization}{suffix}",
                          start, start + 50_000, params,
                          [("mlflow.user", USER), ("mlflow.source.name", "make-store.py"), ("mlflow.source.type", "LOCAL"), ("combo", f"{outlier}/{imputation}")],
                          metrics, artifacts)
            index += 1


def imputation_combos(profile: dict) -> list[tuple[str, str]]:
    combos = [(o, v) for v in MOMENT_VARIANTS for o in profile["outliers"]]
    combos += [(o, m) for m in ("SAITS", "CSDI", "TimesNet") for o in profile["outliers"]]
    return combos + [("ensemble", "ensemble")]


def signal_csv(t: np.ndarray, original: np.ndarray, reconstructed: np.ndarray) -> bytes:
    lines = ["t,original,reconstructed"]
    lines += [f"{a},{b:.6f},{c:.6f}" for a, b, c in zip(t.tolist(), original.tolist(), reconstructed.tolist())]
    return ("\n".join(lines) + "\n").encode()


def imputation_runs(profile: dict, scale: int, seed: int) -> Iterator[RunSpec]:
    index = 0
    base = T0 + 10_000 * 60_000 * scale
    for replicate in range(scale):
        for outlier, method in imputation_combos(profile):
            rng = np.random.default_rng([seed, 3, index])
            start = base + index * 60_000
            steps = int(rng.integers(profile["steps"][0], profile["steps"][1] + 1))
            mae = float(rng.uniform(0.05, 0.5))
            metrics = [("mae", mae, start + 1000, 0), ("rmse", mae * 1.3, start + 1000, 0)] + history(rng, "train/loss", 1.0, steps, start + 2000)
            params = [("outlier_method", outlier), ("imputation_method", method), ("replicate", str(replicate)), ("n_subjects", str(profile["subjects"]))]
            suffix = f"__r{replicate}" if scale > 1 else ""
            subjects = profile["subjects"]
            data_seed = [seed, 4, index]

            def artifacts(subjects=subjects, data_seed=data_seed) -> Iterator[tuple[str, bytes]]:
                signal_rng = np.random.default_rng(data_seed)
                t = np.arange(SIGNAL_LEN)
                noise = signal_rng.normal(0, 0.05, size=(subjects, 2, SIGNAL_LEN))
                for s in range(subjects):
                    original = np.sin(t / 5.0 + s) + noise[s, 0]
                    yield f"signals/csv/S{s:03d}.csv", signal_csv(t, original, original + noise[s, 1] * 0.4)

            yield RunSpec(IMPUTATION_ID, index, run_id_for(seed, IMPUTATION_ID, index), f"{outlier}__{method}{suffix}", start, start + 40_000, params,
                          [("mlflow.user", USER), ("mlflow.source.name", "make-store.py"), ("mlflow.source.type", "LOCAL")], metrics, artifacts)
            index += 1


def all_runs(profile: dict, scale: int, seed: int) -> Iterator[RunSpec]:
    yield from classification_runs(profile, scale, seed)
    yield from imputation_runs(profile, scale, seed)


# ---------------------------------------------------------------------------------------------- client


def force_file_store_ids(ids: list[str]) -> None:
    """The file store draws random 18-digit experiment ids; hand it the seed's ids in order instead."""
    import mlflow.store.tracking.file_store as fs

    original = fs._generate_unique_integer_id
    queue = list(ids)
    fs._generate_unique_integer_id = lambda: int(queue.pop(0)) if queue else original()


def create_sqlite_experiment(client, db: Path, spec: ExperimentSpec) -> None:
    """SQLite assigns max(experiment_id)+1: a placeholder row just below the wanted id makes the real client
    create the experiment with the seed's id (the placeholder is removed right after)."""
    placeholder = int(spec.experiment_id) - 1
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (?, ?, 'active')", (placeholder, f"placeholder-{placeholder}"))
    got = client.create_experiment(spec.name, tags=spec.tags)
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM experiments WHERE experiment_id = ?", (placeholder,))
    if got != spec.experiment_id:
        raise RuntimeError(f"experiment {spec.name}: SQLite gave id {got}, expected {spec.experiment_id}")


def open_client(form: str, root: Path):
    """A real MlflowClient on a new store in `root`, with the Default experiment and the seed's experiments."""
    import mlflow
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)  # the SQL store's default artifact root is ./mlruns, resolved to an absolute path
    if form == "filestore":
        uri = (root / "mlruns").as_uri()
        force_file_store_ids([e.experiment_id for e in EXPERIMENTS])
    else:
        uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    client.search_experiments()  # creates Default (id 0); runs the SQLite migrations
    for spec in EXPERIMENTS:
        if form == "filestore":
            got = client.create_experiment(spec.name, tags=spec.tags)
            if got != spec.experiment_id:
                raise RuntimeError(f"experiment {spec.name}: file store gave id {got}, expected {spec.experiment_id}")
        else:
            create_sqlite_experiment(client, root / "mlflow.db", spec)
    return client


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def write_with_client(form: str, root: Path, runs: Iterator[RunSpec], progress: Callable[[int], None]) -> None:
    """The reference writer: every entity through the real MlflowClient (log_batch, log_artifacts, set_terminated)."""
    from mlflow.entities import Metric, Param, RunTag

    client = open_client(form, root)
    original_uuid4 = uuid.uuid4
    staging = Path(tempfile.mkdtemp(prefix="make-store-"))
    try:
        for count, run in enumerate(runs, 1):
            uuid.uuid4 = lambda run=run: uuid.UUID(hex=run.run_id)  # create_run draws the run id from uuid4 once
            try:
                created = client.create_run(run.experiment_id, start_time=run.start_time, tags=dict(run.tags), run_name=run.run_name)
            finally:
                uuid.uuid4 = original_uuid4
            assert created.info.run_id == run.run_id, (created.info.run_id, run.run_id)
            client.log_batch(run.run_id, params=[Param(k, v) for k, v in run.params])
            for batch in chunks(run.metrics, 1000):
                client.log_batch(run.run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in batch])
            local = staging / run.run_id
            for rel, data in run.artifacts():
                target = local / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            if local.exists():
                client.log_artifacts(run.run_id, str(local))
            client.set_terminated(run.run_id, status="FINISHED", end_time=run.end_time)
            progress(count)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------ fast writer


class FastWriter:
    """Writes runs directly: file-store files and/or SQLite rows, artifacts once under root/mlruns."""

    def __init__(self, root: Path, forms: list[str]):
        self.root = root
        self.forms = forms
        self.mlruns = root / "mlruns"
        self.con: sqlite3.Connection | None = None
        if "sqlite" in forms:
            open_client("sqlite", root)  # schema, Default experiment and the seed's experiments, by the real client
            self.con = sqlite3.connect(root / "mlflow.db", isolation_level=None)
            self.con.execute("PRAGMA synchronous = OFF")
            self.con.execute("BEGIN")
        if "filestore" in forms:
            self.write_file_store_experiments()
        self.mlruns.mkdir(parents=True, exist_ok=True)

    def write_file_store_experiments(self) -> None:
        """Default and the seed's experiments exactly as FileStore.create_experiment writes them."""
        from mlflow.entities import Experiment
        from mlflow.entities.lifecycle_stage import LifecycleStage

        now = int(time.time() * 1000)
        (self.mlruns / ".trash").mkdir(parents=True, exist_ok=True)  # FileStore.__init__ creates it
        for experiment_id, name, tags in [("0", "Default", {})] + [(e.experiment_id, e.name, e.tags) for e in EXPERIMENTS]:
            folder = self.mlruns / experiment_id
            folder.mkdir(parents=True, exist_ok=True)
            experiment = Experiment(experiment_id, name, (self.mlruns / experiment_id).resolve().as_uri(), LifecycleStage.ACTIVE,
                                    creation_time=now, last_update_time=now)
            meta = dict(experiment)
            del meta["tags"]
            write_yaml_file(folder / "meta.yaml", meta)
            for key, value in tags.items():
                write_text(folder / "tags" / key, value)

    def write(self, run: RunSpec) -> None:
        run_dir = self.mlruns / run.experiment_id / run.run_id
        artifact_dir = run_dir / "artifacts"
        artifact_dir.mkdir(parents=True, exist_ok=True)
        made: set[Path] = {artifact_dir}
        for rel, data in run.artifacts():
            target = artifact_dir / rel
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            with open(target, "wb") as out:
                out.write(data)
        tags = list(run.tags) + [("mlflow.runName", run.run_name)]
        if "filestore" in self.forms:
            self.write_run_files(run, run_dir, tags)
        if self.con is not None:
            self.insert_run_rows(run, tags)

    def write_run_files(self, run: RunSpec, run_dir: Path, tags: list[tuple[str, str]]) -> None:
        from mlflow.entities import RunInfo
        from mlflow.store.tracking.file_store import _make_persisted_run_info_dict

        info = RunInfo(run_id=run.run_id, run_name=run.run_name, experiment_id=run.experiment_id, artifact_uri=(run_dir / "artifacts").resolve().as_uri(),
                       user_id=USER, status="FINISHED", start_time=run.start_time, end_time=run.end_time, lifecycle_stage="active")
        write_yaml_file(run_dir / "meta.yaml", _make_persisted_run_info_dict(info))
        for folder in ("metrics", "params", "tags"):
            (run_dir / folder).mkdir(exist_ok=True)
        for key, value in run.params:
            write_text(run_dir / "params" / key, value)
        for key, value in tags:
            write_text(run_dir / "tags" / key, value)
        lines: dict[str, list[str]] = {}
        for key, value, timestamp, step in run.metrics:
            lines.setdefault(key, []).append(f"{timestamp} {value} {step}\n")
        for key, text in lines.items():
            write_text(run_dir / "metrics" / key, "".join(text))

    def insert_run_rows(self, run: RunSpec, tags: list[tuple[str, str]]) -> None:
        """The rows SqlAlchemyStore writes for create_run + log_batch + set_terminated (sanitized values as it stores them)."""
        assert self.con is not None
        artifact_uri = str((self.mlruns / run.experiment_id / run.run_id / "artifacts").resolve())
        self.con.execute(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, source_version,"
            " lifecycle_stage, artifact_uri, experiment_id, deleted_time) VALUES (?, ?, 'UNKNOWN', '', '', ?, 'FINISHED', ?, ?, '', 'active', ?, ?, NULL)",
            (run.run_id, run.run_name, USER, run.start_time, run.end_time, artifact_uri, int(run.experiment_id)),
        )
        self.con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", [(k, v, run.run_id) for k, v in tags])
        self.con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", [(k, v, run.run_id) for k, v in run.params])
        self.con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                             [(k, v, ts, run.run_id, step) for k, v, ts, step in run.metrics])
        latest: dict[str, tuple[str, float, int, int]] = {}
        for point in run.metrics:
            key, value, timestamp, step = point
            current = latest.get(key)
            if current is None or (step, timestamp, value) > (current[3], current[2], current[1]):
                latest[key] = point
        self.con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, 0, ?)",
                             [(k, v, ts, step, run.run_id) for k, v, ts, step in latest.values()])

    def close(self) -> None:
        if self.con is not None:
            self.con.execute("COMMIT")
            self.con.execute("ANALYZE")
            self.con.close()


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)


def write_yaml_file(path: Path, data: dict) -> None:
    """MLflow's write_yaml settings (mlflow/utils/yaml_utils.py): block style, unicode, sorted keys."""
    import yaml

    try:
        from yaml import CSafeDumper as Dumper
    except ImportError:  # pragma: no cover
        from yaml import SafeDumper as Dumper
    with open(path, "w", encoding="utf-8") as out:
        yaml.dump(data, out, default_flow_style=False, allow_unicode=True, sort_keys=True, Dumper=Dumper)


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="seed")
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--forms", default="filestore,sqlite")
    parser.add_argument("--writer", choices=["fast", "client"], default="fast")
    parser.add_argument("--seed", type=int, default=20260201)
    args = parser.parse_args()
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    bad = [f for f in forms if f not in ("filestore", "sqlite")]
    if bad or not forms:
        parser.error(f"--forms: expected filestore and/or sqlite, got {args.forms!r}")
    if args.scale < 1:
        parser.error("--scale must be >= 1")
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; remove it first (the generator never merges stores)")
    out.mkdir(parents=True, exist_ok=True)
    profile = PROFILES[args.profile]
    total = sum(1 for _ in classification_runs(profile, 1, args.seed)) * args.scale + len(imputation_combos(profile)) * args.scale
    began = time.monotonic()

    def progress(done: int) -> None:
        if done % 200 == 0 or done == total:
            print(f"[HEARTBEAT] {done}/{total} runs ({time.monotonic() - began:.0f} s)", file=sys.stderr, flush=True)

    if args.writer == "client" and len(forms) > 1:
        # One process per store: the client caches artifact repositories by run id, and both stores share the run ids.
        for form in forms:
            command = [sys.executable, __file__, "--out", str(out / form), "--profile", args.profile, "--scale", str(args.scale),
                       "--forms", form, "--writer", "client", "--seed", str(args.seed)]
            subprocess.run(command, check=True)
    elif args.writer == "client":
        write_with_client(forms[0], out, all_runs(profile, args.scale, args.seed), progress)
    else:
        writer = FastWriter(out, forms)
        for count, run in enumerate(all_runs(profile, args.scale, args.seed), 1):
            writer.write(run)
            progress(count)
        writer.close()
    summary = dict(profile=args.profile, scale=args.scale, seed=args.seed, writer=args.writer, forms=forms, runs=total,
                   experiments={e.experiment_id: e.name for e in EXPERIMENTS}, seconds=round(time.monotonic() - began, 1))
    (out / "store.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {total} runs ({args.profile}, scale {args.scale}, {args.writer} writer, {'+'.join(forms)}) to {out} in {summary['seconds']} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
