"""TensorBoard: a run's records as event files (scalars, hparams, the diagnosis as text).

Tags: `loss/train` (every step), `lr`, `epoch/<metric>` (test_loss, test_accuracy, train_loss
after each epoch), `<statistic>/layer_<i>` for every per-layer statistic (weight_grad_norm,
backprop_grad_norm, dead_fraction, ...), `final/<metric>`; the hparams plugin gets the group
choices and swept values with the final metrics; the diagnosis is the text `diagnosis`.
Every value of one step goes into one event, so a 10-epoch run is a few hundred events.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

from initlab.loggers.run_info import RunInfo, diagnosis_text, hyperparameters, missing

EPOCH_METRICS = {"test_loss": "epoch/test_loss", "test_accuracy": "epoch/test_accuracy",
                 "epoch_train_loss": "epoch/train_loss"}
FINAL = ("test_accuracy", "test_loss", "train_loss")


def tag(metric: str, layer: Optional[int] = None) -> str:
    """The TensorBoard tag of a curve metric, or of a per-layer statistic of `layer`."""
    if layer is not None:
        return f"{metric}/layer_{layer}"
    return {"train_loss": "loss/train", "lr": "lr"}.get(metric) or EPOCH_METRICS.get(metric, f"curves/{metric}")


class TensorBoard:
    """Writes each run's event file into its folder (or into <log_dir>/<run folder name>)."""

    def __init__(self, log_dir: Optional[str] = None) -> None:
        self.log_dir = log_dir

    def target(self, run: RunInfo) -> Path:
        return run.folder if self.log_dir is None else Path(self.log_dir).expanduser() / run.name

    def log(self, run: RunInfo) -> Path:
        try:
            from tensorboard.compat.proto.summary_pb2 import Summary
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError:
            raise missing("tensorboard", "tensorboard") from None
        folder = self.target(run)
        for old in folder.glob("events.out.tfevents.*"):  # a run trained again replaces its events
            old.unlink()
        steps: dict[int, list] = defaultdict(list)
        for metric, step, value in zip(run.curves.metric, run.curves.step, run.curves.value):
            steps[int(step)].append(Summary.Value(tag=tag(metric), simple_value=float(value)))
        for metric, layer, step, value in zip(run.layers.metric, run.layers.layer, run.layers.step, run.layers.value):
            steps[int(step)].append(Summary.Value(tag=tag(metric, int(layer)), simple_value=float(value)))
        writer = SummaryWriter(str(folder))
        try:
            events = writer._get_file_writer()  # one event per step, every value of the step in it
            for step in sorted(steps):
                events.add_summary(Summary(value=steps[step]), global_step=step)
            metrics = run.summary.get("metrics") or {}
            final = {f"final/{m}": float(metrics[m]) for m in FINAL if metrics.get(m) is not None}
            last = int(metrics.get("steps") or 0)
            for name, value in final.items():
                events.add_summary(Summary(value=[Summary.Value(tag=name, simple_value=value)]), global_step=last)
            params = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hyperparameters(run).items()}
            for summary in hparams(params or {"run": run.name}, final):
                events.add_summary(summary)
            writer.add_text("diagnosis", diagnosis_text(run.summary), global_step=last)
        finally:
            writer.close()
        return folder
