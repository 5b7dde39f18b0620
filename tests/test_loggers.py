"""TensorBoard and MLflow loggers, read back with the libraries' own readers and compared with
each run's summary.json and parquet tables."""

import json
import subprocess
import sys

import numpy as np
import pytest

from initlab import loggers
from initlab.config import loggers as config_loggers

from initlab.store import records
from initlab.config.check import ConfigError
from initlab.train.runner import run

from conftest import make_config
from test_cli import SMALL
from test_sweeps import run_cli

pytest.importorskip("tensorboard")
mlflow = pytest.importorskip("mlflow")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData  # noqa: E402

ONE = [*SMALL, "trainer.max_steps=12", "trainer.log_every=3", "init=xavier_uniform"]


def events(folder):
    files = list(folder.glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    return {e.step: e.value for e in acc.Scalars(tag)}


def assert_tensorboard_equals_records(folder):
    record = records.load_run(folder)
    acc = events(folder)
    loss = record.curves[record.curves.metric == "train_loss"]
    assert scalars(acc, "loss/train") == pytest.approx(dict(zip(loss.step, loss.value)))
    accuracy = record.curves[record.curves.metric == "test_accuracy"]
    assert scalars(acc, "epoch/test_accuracy") == pytest.approx(dict(zip(accuracy.step, accuracy.value)))
    for layer in sorted(record.layers.layer.unique()):
        rows = record.layers[(record.layers.metric == "weight_grad_norm") & (record.layers.layer == layer)]
        assert scalars(acc, f"weight_grad_norm/layer_{layer}") == pytest.approx(dict(zip(rows.step, rows.value)), rel=1e-6)
    final = record.summary["metrics"]["test_accuracy"]
    assert list(scalars(acc, "final/test_accuracy").values()) == pytest.approx([final])
    text = acc.Tensors("diagnosis/text_summary")[0].tensor_proto.string_val[0].decode()
    assert record.summary["diagnosis"]["label"] in text
    start = HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    chosen = record.summary.get("choices") or {}
    if chosen.get("init"):  # in a multirun: the group choices and swept values are the hyper-parameters
        assert start.session_start_info.hparams["init"].string_value == chosen["init"]
    return record


def test_a_run_logs_to_tensorboard_what_its_records_hold(tmp_path):
    run(make_config(*ONE, "logger=tensorboard"), output_dir=tmp_path / "run")
    assert_tensorboard_equals_records(tmp_path / "run")


def test_a_run_logs_to_mlflow_what_its_records_hold(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run(make_config(*ONE, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}"), output_dir=tmp_path / "run")
    record = records.load_run(tmp_path / "run")
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("initlab").experiment_id])
    assert len(runs) == 1 and "mlflow.parentRunId" not in runs[0].data.tags  # a single run has no parent
    logged = runs[0]
    assert logged.data.tags["status"] == record.summary["status"]
    assert logged.data.tags["diagnosis"] == record.summary["diagnosis"]["label"]
    params = logged.data.params  # run outside Hydra: no group choices, the config's values and targets
    assert params["init._target_"] == "initlab.init.xavier_uniform_" and params["model.width"] == "32"
    history = client.get_metric_history(logged.info.run_id, "loss/train")
    loss = record.curves[record.curves.metric == "train_loss"]
    assert {m.step: m.value for m in history} == pytest.approx(dict(zip(loss.step, loss.value)))
    grads = client.get_metric_history(logged.info.run_id, "weight_grad_norm/layer_0")
    rows = record.layers[(record.layers.metric == "weight_grad_norm") & (record.layers.layer == 0)]
    assert {m.step: m.value for m in grads} == pytest.approx(dict(zip(rows.step, rows.value)))
    names = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"summary.json", "layers.parquet", "curves.parquet"} <= names
    copy = client.download_artifacts(logged.info.run_id, "summary.json", str(tmp_path / "copy"))
    assert json.loads(open(copy).read()) == json.loads((tmp_path / "run" / "summary.json").read_text())


@pytest.mark.slow  # a vectorized sweep through the CLI; the fast part keeps one run logged
def test_vectorized_members_log_as_ordinary_runs_and_a_multirun_is_a_parent_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_cli("-m", "hydra/launcher=vectorized", *ONE[:-1], "init=xavier_uniform,kaiming_normal,orthogonal",
            "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}", "logger.mlflow.experiment_name=study",
            "hydra/callbacks=report", "hydra.sweep.dir=sweep", cwd=tmp_path)
    folders = sorted(p.parent for p in (tmp_path / "sweep").glob("*/summary.json"))
    assert len(folders) == 3
    for folder in folders:
        assert_tensorboard_equals_records(folder)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("study")
    logged = client.search_runs([experiment.experiment_id])
    parents = [r for r in logged if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in logged if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.data.tags["initlab.folder"] for c in children) == [str(f.resolve()) for f in folders]
    # the sweep's report (hydra/callbacks=report) is the parent run's artifact
    assert "report/report.md" in {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    # where records are copied is not what trains: the logger is not part of a run's identity
    from initlab.store.provenance import config_hash
    summary = json.loads((folders[0] / "summary.json").read_text())
    assert config_hash(summary["config"]) == config_hash({**summary["config"], "logger": {}})


@pytest.mark.slow  # initlab-report in processes of its own; test_a_run_logs_to_mlflow_what_its_records_hold keeps the loggers in the fast part
def test_initlab_report_exports_an_existing_sweep_once(tmp_path):
    run_cli("-m", *ONE[:-1], "init=xavier_uniform,kaiming_normal", "hydra.sweep.dir=sweep", cwd=tmp_path)
    uri = f"sqlite:///{tmp_path / 'export.db'}"
    for _ in range(2):  # the second export finds every run already there
        result = subprocess.run([sys.executable, "-m", "initlab.report.page", str(tmp_path / "sweep"),
                                 "--tensorboard", str(tmp_path / "tb"), "--mlflow", uri],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "exported 2 runs" in result.stdout
    for folder in sorted(p.parent for p in (tmp_path / "sweep").glob("*/summary.json")):
        acc = events(tmp_path / "tb" / folder.name)
        loss = records.load_run(folder).curves.query("metric == 'train_loss'")
        assert scalars(acc, "loss/train") == pytest.approx(dict(zip(loss.step, loss.value)))
    client = mlflow.tracking.MlflowClient(uri)
    logged = client.search_runs([client.get_experiment_by_name("initlab").experiment_id])
    assert len(logged) == 3  # a parent and two children, not twice
    parent = next(r for r in logged if "mlflow.parentRunId" not in r.data.tags)
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/report.md" in report and "report/figures" in report


def test_logger_settings_are_checked_in_one_line():
    with pytest.raises(ConfigError, match=r"^logger.wandb: not a logger \(allowed: tensorboard, mlflow\)$"):
        config_loggers.check({"wandb": {}})
    with pytest.raises(ConfigError, match=r"^logger.mlflow.uri: not a setting of .*allowed: tracking_uri, experiment_name, max_points"):
        config_loggers.check({"mlflow": {"_target_": config_loggers.KNOWN["mlflow"][0], "uri": "x"}})


def test_no_logger_writes_nothing_and_builds_nothing(tmp_path):
    run(make_config(*ONE), output_dir=tmp_path / "run")
    assert loggers.build({}) == [] and not list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert np.isfinite(records.load_run(tmp_path / "run").summary["metrics"]["test_loss"])


def test_thinning_keeps_evenly_spaced_points_with_the_first_and_the_last():
    import pandas as pd

    from initlab.loggers.mlflow import thin

    table = pd.DataFrame({"metric": ["train_loss"] * 3000 + ["lr"] * 10, "step": list(range(3000)) + list(range(10)),
                          "value": 1.0})
    thinned = thin(table, ["metric"], 300)
    loss = thinned[thinned.metric == "train_loss"].step.tolist()
    assert len(loss) <= 300 and loss[0] == 0 and loss[-1] == 2999 and len(set(np.diff(loss[:-1]))) == 1
    assert thinned[thinned.metric == "lr"].step.tolist() == list(range(10))  # short series stay whole
    assert len(thin(table, ["metric"], None)) == len(table)
