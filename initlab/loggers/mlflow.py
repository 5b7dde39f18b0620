"""MLflow: one MLflow run per initlab run; a multirun is a parent run with a child per job.

Params: the group choices and every config value (flattened: `lr.value`, `model.depth`, ...; not
where files live); metrics: the same curves and per-layer statistics as TensorBoard's tags, with
their steps; tags: `status`, `diagnosis`, `config_hash`, `initlab.folder`; artifacts: the run's
summary.json and its two tables. The store defaults to a SQLite file beside the runs
(`outputs/mlflow.db`, artifacts in `outputs/mlflow-artifacts/`): `mlflow ui --backend-store-uri
sqlite:///outputs/mlflow.db` shows it. A run already in the store (same folder, same identity) is
not logged twice. `max_points` (100 by default) thins each series to at most that many evenly
spaced points, the first and last kept (MLflow's charts show ~320 anyway): a SQLite store takes
~13,000 metric values a second and a 10-epoch run records ~12,000 (TensorBoard gets them all);
the full tables are the run's artifacts either way.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Optional

from filelock import FileLock

from initlab.store import records
from initlab.loggers.run_info import RunInfo, diagnosis_text, missing
from initlab.store.flat import flatten
from initlab.loggers.tensorboard import FINAL, tag
from initlab.store.keys import WHERE_NOT_WHAT

PARENT = ".mlflow-parent.json"  # in a sweep folder: the parent run of its jobs, per store
METRICS_PER_CALL, PARAMS_PER_CALL = 1000, 100  # MLflow's limits for one log_batch


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('outputs').resolve() / 'mlflow.db'}"


class MLflow:
    """Logs each finished run into an MLflow tracking store (no server needed)."""

    def __init__(self, tracking_uri: Optional[str] = None, experiment_name: Optional[str] = None,
                 max_points: Optional[int] = 100) -> None:
        self.tracking_uri, self.experiment_name, self.max_points = tracking_uri, experiment_name, max_points
        self._client = None
        self._ready: dict[Optional[str], threading.Thread] = {}

    def prepare(self, study: Optional[str]) -> None:
        """Import MLflow and open the store (and the experiment) on a thread while the run trains:
        ~3 s the first time in a process, which would otherwise come after training."""
        if study not in self._ready:
            self._ready[study] = threading.Thread(target=self._warm, args=(study,), daemon=True)
            self._ready[study].start()

    def _warm(self, study: Optional[str]) -> None:
        try:
            self.experiment(study)
        except Exception:  # log() meets the same error again and reports it
            pass

    @property
    def uri(self) -> str:
        return self.tracking_uri or default_uri()

    def client(self):
        if self._client is None:
            try:
                from mlflow.tracking import MlflowClient
            except ImportError:
                raise missing("mlflow", "mlflow") from None
            if self.uri.startswith("sqlite:///"):
                Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(self.uri)
        return self._client

    def experiment(self, study: Optional[str]) -> str:
        """The experiment's id, made on first use (artifacts beside a SQLite store)."""
        client, name = self.client(), self.experiment_name or study or "initlab"
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "mlflow-artifacts").resolve().as_uri()
        return client.create_experiment(name, artifact_location=location)

    def parent(self, experiment_id: str, sweep_dir: Path) -> str:
        """The sweep's parent run (made by the first of its jobs to finish; a file lock keeps
        parallel jobs from making two)."""
        client = self.client()
        with FileLock(str(sweep_dir / ".mlflow-parent.lock")):
            known = json.loads((sweep_dir / PARENT).read_text()) if (sweep_dir / PARENT).exists() else {}
            key = f"{self.uri}#{experiment_id}"
            if key in known:
                return known[key]
            run = client.create_run(experiment_id, run_name=sweep_dir.name,
                                    tags={"initlab.sweep": str(sweep_dir.resolve())})
            client.set_terminated(run.info.run_id, "FINISHED")
            known[key] = run.info.run_id
            (sweep_dir / PARENT).write_text(json.dumps(known, indent=2))
            return run.info.run_id

    def logged_before(self, experiment_id: str, run: RunInfo) -> bool:
        hash_ = run.summary.get("config_hash", "")
        found = self.client().search_runs(
            [experiment_id], filter_string=f"tags.`initlab.folder` = '{run.folder.resolve()}' "
                                           f"and tags.config_hash = '{hash_}'", max_results=1)
        return len(found) > 0

    def log(self, run: RunInfo) -> Optional[str]:
        if run.study in self._ready:
            self._ready[run.study].join()
        from mlflow.entities import Metric, Param

        client = self.client()
        experiment_id = self.experiment(run.study)
        if self.logged_before(experiment_id, run):
            return None
        summary = run.summary
        diagnosis = (summary.get("diagnosis") or {}).get("label") or summary.get("status")
        tags = {"status": summary.get("status"), "diagnosis": diagnosis, "config_hash": summary.get("config_hash", ""),
                "initlab.folder": str(run.folder.resolve()), "mlflow.note.content": diagnosis_text(summary)}
        if run.sweep_dir is not None:
            tags["mlflow.parentRunId"] = self.parent(experiment_id, run.sweep_dir)
        created = client.create_run(experiment_id, run_name=run.name, tags=tags)
        run_id = created.info.run_id
        stamp = created.info.start_time
        curves, layers = thin(run.curves, ["metric"], self.max_points), thin(run.layers, ["metric", "layer"], self.max_points)
        metrics = [Metric(tag(m), float(v), stamp, int(s)) for m, s, v in zip(curves.metric, curves.step, curves.value)]
        metrics += [Metric(tag(m, int(layer)), float(v), stamp, int(s))
                    for m, layer, s, v in zip(layers.metric, layers.layer, layers.step, layers.value)]
        final = summary.get("metrics") or {}
        metrics += [Metric(f"final/{m}", float(final[m]), stamp, int(final.get("steps") or 0))
                    for m in FINAL if final.get(m) is not None]
        params = [Param(k, str(v)[:6000]) for k, v in params_of(summary).items()]
        for start in range(0, len(params), PARAMS_PER_CALL):
            client.log_batch(run_id, params=params[start:start + PARAMS_PER_CALL])
        for start in range(0, len(metrics), METRICS_PER_CALL):
            client.log_batch(run_id, metrics=metrics[start:start + METRICS_PER_CALL])
        # From memory, not the folder: the vectorized launcher may still be writing it.
        as_written = summary if "schema_version" in summary else {"schema_version": records.SCHEMA_VERSION, **summary}
        client.log_text(run_id, json.dumps(as_written, indent=2, default=str) + "\n", records.SUMMARY)
        with tempfile.TemporaryDirectory() as tmp:
            run.layers.to_parquet(Path(tmp) / records.LAYERS, index=False)
            run.curves.to_parquet(Path(tmp) / records.CURVES, index=False)
            client.log_artifacts(run_id, tmp)
        client.set_terminated(run_id, "FAILED" if summary.get("status") == "failed" else "FINISHED")
        return run_id


def thin(table, series: list[str], max_points: Optional[int]):
    """At most `max_points` rows per series (evenly spaced, the first and the last kept); all
    rows when max_points is None."""
    if not max_points or not len(table):
        return table
    import numpy as np

    position = table.groupby(series, observed=True).cumcount().to_numpy()
    size = table.groupby(series, observed=True).step.transform("size").to_numpy()
    stride = np.maximum(1, np.ceil((size - 1) / max(1, max_points - 1))).astype(int)
    keep = (position % stride == 0) | (position == size - 1)
    return table[keep]


def params_of(summary: dict) -> dict:
    """The group choices (`init`, `lr`, ...) and every config value (each group's `_target_` too)
    but where files live and the diagnosis' thresholds."""

    flat = {k: v for k, v in flatten(summary.get("config") or {}, targets=True).items() if k not in WHERE_NOT_WHAT
            and not k.startswith(("diagnose.", "logger."))}
    chosen = {g: o for g, o in (summary.get("choices") or {}).items() if o is not None}
    return {**chosen, **flat}


def attach_report(logger: MLflow, sweep_dir: Path, report_dir: Path, study: Optional[str]) -> Optional[str]:
    """The sweep's report (report.md, its figures and tables) as artifacts of the sweep's parent run."""
    if not report_dir.is_dir():
        return None
    parent = logger.parent(logger.experiment(study), sweep_dir)
    logger.client().log_artifacts(parent, str(report_dir), "report")
    return parent

