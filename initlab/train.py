"""`run(cfg) -> RunResult`: seed, build, initialize, train, evaluate and record one configuration."""

from __future__ import annotations

import logging
import math
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import pandas as pd
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from initlab import data as datasets
from initlab import provenance, records, schedule
from initlab.config import ConfigError, validate
from initlab.init import apply_init
from initlab.diagnose import Context, Evidence, describe, diagnose, stuck
from initlab.model import MLP
from initlab.probes import Layers, Recorder, dead_units, saturated

log = logging.getLogger("initlab")


@dataclass
class RunResult:
    """What one run produced: the same content as its directory's files."""

    status: str  # completed, diverged or failed
    metrics: dict
    folder: Path
    summary: dict
    layers: pd.DataFrame
    curves: pd.DataFrame


def resolve_device(name: str, job_num: Optional[int] = None) -> torch.device:
    """`auto` is CUDA when available, else the CPU. Jobs of a multirun on a machine with several
    GPUs take them in turn (job n on GPU n mod count), so parallel jobs do not all land on GPU 0."""
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    return torch.device("cuda", job_num % count if job_num is not None and count > 1 else 0)


@dataclass
class Evaluation:
    """One pass over a dataset: loss, accuracy, and per layer the dead and saturated fractions."""

    loss: float
    accuracy: float
    dead_fraction: list[float]  # units that output 0 for every sample of the pass
    saturated_fraction: list[float]  # outputs in tanh/sigmoid's flat region
    dead_outputs: list[int]  # classes whose output is 0 for every sample


@torch.no_grad()
def evaluate(model: MLP, x: torch.Tensor, y: torch.Tensor, chunk: int = 10_000) -> Evaluation:
    """Evaluate `model` on (x, y) in chunks, with the per-layer evaluation-pass statistics."""
    loss, correct = x.new_zeros(()), x.new_zeros(())
    alive: list[torch.Tensor] = []
    saturated_count: list[torch.Tensor] = []
    for xs, ys in zip(x.split(chunk), y.split(chunk)):
        taps: list = []
        out = model(xs, taps)
        loss += F.cross_entropy(out, ys, reduction="sum")
        correct += (out.argmax(1) == ys).sum()
        for i, ((_, post), name) in enumerate(zip(taps, model.activation_names)):
            live, sat = ~dead_units(post), saturated(name, post).sum()
            if i == len(alive):
                alive.append(live), saturated_count.append(sat)
            else:
                alive[i] |= live
                saturated_count[i] += sat
    dead = [(~a).float().mean().item() for a in alive]
    sat = [(c / (len(y) * len(a))).item() for c, a in zip(saturated_count, alive)]
    dead_outputs = (~alive[-1]).nonzero().flatten().tolist()
    return Evaluation((loss / len(y)).item(), (correct / len(y)).item(), dead, sat, dead_outputs)


def build_model(settings: dict, data: datasets.Tensors, device: torch.device) -> MLP:
    """The run's model with its initial weights: seed, build, move to the device, initialize.

    The global RNG is seeded with trainer.seed first, so the same seed always gives the same
    weights on the same device (the vectorized launcher builds each member the same way).
    """
    m = settings["model"]
    torch.manual_seed(settings["trainer"]["seed"])
    model = instantiate(m, in_features=data.in_features, num_classes=data.num_classes).to(device)
    apply_init(model, settings["init"], m["activation"], m["negative_slope"])
    return model


def steps_of(settings: dict, num_samples: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of a run: epochs of batches, capped by trainer.max_steps."""
    t = settings["trainer"]
    per_epoch = math.ceil(num_samples / t["batch_size"])
    total = t["epochs"] * per_epoch
    return per_epoch, total if t["max_steps"] is None else min(total, t["max_steps"])


class Training:
    """The state of one training run; `fit()` runs it, and the tables hold what it recorded so far."""

    def __init__(self, settings: dict, device: torch.device) -> None:
        t, m = settings["trainer"], settings["model"]
        self.settings, self.device, self.trainer = settings, device, t
        self.data = datasets.load(settings["data"], device)
        self.shuffle = torch.Generator().manual_seed(t["seed"])
        self.model = build_model(settings, self.data, device)
        self.optimizer = instantiate(settings["optim"], params=self.model.parameters(),
                                     lr=settings["lr"]["value"], _convert_="all")
        self.lr_at = schedule.build(settings["lr"])
        self.steps_per_epoch, self.total_steps = steps_of(settings, len(self.data.train_y))
        self.recorder = Recorder()
        self.curves: list[tuple[int, int, str, float]] = []
        self.step = 0
        self.diverged_at: Optional[int] = None
        self.metrics: dict = {}
        self.eval_rows: list[tuple[int, int, int, str, float]] = []
        self.last_eval: Optional[Evaluation] = None
        self.stopped: Optional[dict] = None  # {'reason': ..., 'step': ...} when trainer.stop_on ended the run
        self.diagnose_cfg = settings["diagnose"]

    def fit(self) -> str:
        """Train until the last epoch, `max_steps`, or a non-finite loss; return the status."""
        epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        for epoch in range(1, epochs + 1):
            started, first_log = time.perf_counter(), self.recorder.count()
            losses = self._epoch(epoch)
            epoch_loss = losses.mean().item() if len(losses) else float("nan")
            if not math.isfinite(epoch_loss):
                bad = (~torch.isfinite(losses)).nonzero()
                self.diverged_at = self.step - len(losses) + int(bad[0]) if len(bad) else self.step
                self.metrics = {"train_loss": epoch_loss, "test_loss": float("nan"),
                                "test_accuracy": float("nan"), "steps": self.step}
                log.info(f"epoch {epoch}/{epochs} | loss not finite at step {self.diverged_at}: diverged")
                return "diverged"
            self.last_eval = ev = evaluate(self.model, self.data.test_x, self.data.test_y)
            self.curves += [(self.step, epoch, "epoch_train_loss", epoch_loss),
                            (self.step, epoch, "test_loss", ev.loss),
                            (self.step, epoch, "test_accuracy", ev.accuracy)]
            for layer, (dead, sat) in enumerate(zip(ev.dead_fraction, ev.saturated_fraction)):
                self.eval_rows += [(self.step, epoch, layer, "eval_dead_fraction", dead),
                                   (self.step, epoch, layer, "eval_saturated_fraction", sat)]
            self.metrics = {"train_loss": epoch_loss, "test_loss": ev.loss, "test_accuracy": ev.accuracy,
                            "steps": self.step, "epochs": round(self.step / self.steps_per_epoch, 4)}
            log.info(f"epoch {epoch}/{epochs} | train_loss {epoch_loss:.4f} | test_loss {ev.loss:.4f} | "
                     f"test_acc {100 * ev.accuracy:.2f}% | {self._grad_range(first_log)} | "
                     f"{time.perf_counter() - started:.1f}s")
            if self.stopped is not None:
                log.info(f"stopped early at step {self.stopped['step']}: {self.stopped['reason']}")
                break
        return "completed"

    def _epoch(self, epoch: int) -> torch.Tensor:
        """One pass over the shuffled training set (or what is left of `max_steps`); the batch losses."""
        t, x_all, y_all = self.trainer, self.data.train_x, self.data.train_y
        order = torch.randperm(len(y_all), generator=self.shuffle).to(self.device)
        batches = order.split(t["batch_size"])[: self.total_steps - self.step]
        losses = []
        show = t["progress"] and sys.stderr.isatty()
        for idx in tqdm(batches, desc=f"epoch {epoch}", unit="step", leave=False, disable=not show):
            lr = self.lr_at(self.step, total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            log_step = self.step % t["log_every"] == 0
            record = log_step and t["record"]
            taps = [] if record else None
            loss = F.cross_entropy(self.model(x_all[idx], taps), y_all[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if record:
                self.recorder.before_step(Layers.of_model(self.model, taps))
            self.optimizer.step()
            losses.append(loss.detach())
            self.step += 1
            if record:
                self.recorder.after_step(Layers.of_model(self.model), self.step - 1, epoch)
            if log_step:
                self.curves.append((self.step - 1, epoch, "lr", lr))
                # Checking the loss syncs with the device, so only at log steps; fit() finds
                # the exact first non-finite step afterwards.
                if not torch.isfinite(loss):
                    break
            if self._stuck(epoch, losses):
                break
        losses = torch.stack(losses) if losses else torch.empty(0)
        first = self.step - len(losses)
        self.curves += [(first + i, epoch, "train_loss", v) for i, v in enumerate(losses.tolist())]
        return losses

    def outcome(self, status: str) -> Outcome:
        layers, curves = self.tables()
        return Outcome(status, self.metrics, layers, curves, self.context(status), self.step, self.stopped)

    def context(self, status: str = "completed") -> Context:
        m = self.settings["model"]
        return Context(num_classes=self.data.num_classes, activation=m["activation"],
                       output_activation=m["output_activation"], status=status, diverged_at_step=self.diverged_at,
                       dead_outputs=self.last_eval.dead_outputs if self.last_eval else [])

    def _stuck(self, epoch: int, losses: list) -> bool:
        """With trainer.stop_on=[stuck], every `diagnose.window` steps: has the run been stuck a window long?"""
        window = self.diagnose_cfg["window"]
        if "stuck" not in self.trainer["stop_on"] or self.step % window or self.step < window:
            return False
        layers, curves = self.tables()
        first = self.step - len(losses)  # this epoch's losses are not in the curves yet
        now = pd.DataFrame({"step": range(first, self.step), "epoch": epoch, "metric": "train_loss",
                            "value": torch.stack(losses).tolist()})
        finding = stuck(Evidence(layers, pd.concat([curves, now]), self.context()), self.diagnose_cfg)
        if finding is None:
            return False
        self.stopped = {"reason": "stuck", "step": self.step, "finding": finding.message}
        return True

    def _grad_range(self, first_log: int) -> str:
        """Smallest and largest per-layer weight-gradient norm, averaged over this epoch's log steps."""
        per_layer = self.recorder.mean_since(first_log, "weight_grad_norm")
        if per_layer is None:
            return "grad_norm n/a"
        lo, hi = int(per_layer.argmin()), int(per_layer.argmax())
        return f"grad_norm min {per_layer[lo]:.2e} (layer {lo}) max {per_layer[hi]:.2e} (layer {hi})"

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(layers, curves) as recorded so far."""
        curves = pd.DataFrame(self.curves, columns=["step", "epoch", "metric", "value"])
        curves = curves.astype({"step": "int64", "epoch": "int64", "value": "float64"})
        layers = pd.concat([self.recorder.table(), records.layers_frame(self.eval_rows)],
                           ignore_index=True).astype(records.LAYER_TYPES)
        return layers, curves.sort_values(["metric", "step"], kind="stable", ignore_index=True)


@dataclass
class JobContext:
    """Where a run writes and what Hydra knows about it (defaults when run() is called directly)."""

    folder: Path
    choices: dict
    overrides: list
    job_num: Optional[int] = None  # the job's index in a multirun


def _job_context(output_dir: Optional[str | Path]) -> JobContext:
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
        num = hc.job.num if hc.mode == RunMode.MULTIRUN else None
        return JobContext(Path(output_dir or hc.runtime.output_dir), choices, list(hc.overrides.task), num)
    if output_dir is None:
        raise ValueError("run() outside Hydra needs an output_dir")
    return JobContext(Path(output_dir), {}, [])


def finished_before(folder: Path, settings: dict) -> Optional[RunResult]:
    """The run already in `folder` when it is this configuration's and it finished (resume)."""
    if settings["rerun"] or not records.is_finished(folder):
        return None
    try:
        previous = records.load_run(folder)
    except Exception:  # unreadable or from another schema version: run again
        return None
    summary = previous.summary
    if summary.get("status") not in ("completed", "diverged") or summary.get("config_hash") != provenance.config_hash(settings):
        return None
    return RunResult(summary["status"], summary["metrics"], folder, summary, previous.layers, previous.curves)


@dataclass
class Outcome:
    """What one training produced, ready to be recorded (by run(), or per member by the vectorized launcher)."""

    status: str
    metrics: dict
    layers: pd.DataFrame
    curves: pd.DataFrame
    context: Context
    steps: int
    stopped: Optional[dict] = None
    error: Optional[BaseException] = None


def record(job: JobContext, settings: dict, device: torch.device, started_at: datetime, wall_time_s: float,
           outcome: Outcome) -> RunResult:
    """Diagnose an outcome, write its records into the job folder, print its last lines."""
    context = outcome.context
    context.error = None if outcome.error is None else f"{type(outcome.error).__name__}: {outcome.error}"
    diagnosis = diagnose(outcome.layers, outcome.curves, context, settings["diagnose"])
    summary = provenance.summary(
        status=outcome.status, metrics=outcome.metrics, diverged_at_step=context.diverged_at_step,
        settings=settings, diagnosis=diagnosis, stopped=outcome.stopped, choices=job.choices,
        overrides=job.overrides, device=device, started_at=started_at, wall_time_s=wall_time_s,
        error=outcome.error,
    )
    records.save_run(job.folder, summary, outcome.layers, outcome.curves)
    for line in describe(diagnosis):
        log.info(line)
    log.info(f"{outcome.status} | {provenance.describe(summary['metrics'])} | {outcome.steps} steps | "
             f"{summary['wall_time_s']:.1f}s | {job.folder}")
    return RunResult(outcome.status, summary["metrics"], job.folder, summary, outcome.layers, outcome.curves)


def log_skipped(done: RunResult) -> None:
    log.info(f"skipped: {done.folder} already holds this configuration's {done.status} run (rerun=true runs it again)")


def run(cfg: DictConfig, output_dir: Optional[str | Path] = None) -> RunResult:
    """Train the configuration `cfg` and write its records into `output_dir` (Hydra's job dir by default).

    A bad config value raises ConfigError and a missing dataset DataError before anything is
    written. When the folder already holds this configuration's finished run (a resumed sweep),
    that run is returned and nothing trains, unless `rerun=true`. A non-finite loss ends the run
    with status `diverged`; any other exception is recorded as `failed` (summary.json and
    error.txt) and then raised again.
    """
    settings = validate(cfg)
    job = _job_context(output_dir)
    done = finished_before(job.folder, settings)
    if done is not None:
        log_skipped(done)
        return done
    records.clear_run(job.folder)  # a half-written earlier attempt must never count as this run's result
    started_at, started = datetime.now(timezone.utc), time.perf_counter()
    device = resolve_device(settings["trainer"]["device"], job.job_num)
    training = None
    try:
        training = Training(settings, device)
        outcome = training.outcome(training.fit())
    except (ConfigError, datasets.DataError):
        raise
    except Exception as e:  # a crash is a result too: record it, then let it propagate
        outcome = failed_outcome(settings, training, e, job.folder)
    result = record(job, settings, device, started_at, time.perf_counter() - started, outcome)
    if outcome.error is not None:
        raise outcome.error
    return result


def failed_outcome(settings: dict, training: Optional["Training"], error: BaseException, folder: Path) -> Outcome:
    """The outcome of a run that raised: what it recorded so far, and the traceback in error.txt."""
    records.write_text(folder / records.ERROR, traceback.format_exc())
    log.error(f"failed: {type(error).__name__}: {error} (traceback in {folder / records.ERROR})")
    if training is not None:
        outcome = training.outcome("failed")
    else:
        m = settings["model"]
        context = Context(num_classes=0, activation=m["activation"], output_activation=m["output_activation"],
                          status="failed")
        outcome = Outcome("failed", {}, records.empty_layers(), records.empty_curves(), context, 0)
    outcome.error = error
    return outcome
