"""The training loop of one run: build, initialize, train, evaluate, record in memory.

`Training(settings, device).fit()` trains one validated configuration; `outcome()` is what it
produced. Writing it to disk is train.run's job.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Optional

import pandas as pd
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from tqdm import tqdm

from initlab.build import data as datasets
from initlab.config.targets import resolve
from initlab.train.gpu import graphs
from initlab.train import jacobian
from initlab.store import records
from initlab.build import param, schedule
from initlab import theory
from initlab.train import predictions
from initlab.train.finite_checks import LogStepChecks
from initlab.diagnosis.evidence import Context
from initlab.diagnosis.stuck import stuck_check_due, stuck_while_training
from initlab.build.environment import matmul_precision
from initlab.build.init import apply_init, resolve_auto, symmetric_layers
from initlab.build.model import MLP
from initlab.train.layers import EvaluationPass, Layers
from initlab.train.recorder import Recorder

log = logging.getLogger("initlab")

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
    theory: Optional[dict] = None  # the mean-field predictions at init (predictions.for_model)
    jacobian: Optional[dict] = None  # the Jacobian's singular values at init (jacobian.for_run)


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
    stats = EvaluationPass(model.activation_names)
    for xs, ys in zip(x.split(chunk), y.split(chunk)):
        taps: list = []
        out = model(xs, taps)
        loss += F.cross_entropy(out, ys, reduction="sum")
        correct += (out.argmax(1) == ys).sum()
        stats.add([(pre[None], post[None]) for pre, post in taps])  # a stack of one member
    return Evaluation((loss / len(y)).item(), (correct / len(y)).item(), stats.dead_fraction()[0],
                      stats.saturated_fraction()[0], stats.dead_outputs()[0])


def construct(config: dict, **kwargs):
    """hydra.utils.instantiate(config, **kwargs), for the flat configs it is mostly given.

    A config whose values (and kwargs) are all plain scalars calls its `_target_` directly,
    which is what instantiate does with them, at a third of its cost (it copies the config into
    an OmegaConf object first; a vectorized group builds hundreds of models). Anything else
    (nested configs, lists, `_partial_`, ...) goes through instantiate.
    """
    plain = (str, int, float, bool, type(None))
    if all(isinstance(v, plain) for v in (*config.values(), *kwargs.values())) and \
            not any(k.startswith("_") and k != "_target_" for k in config):
        return resolve(config["_target_"])(**{k: v for k, v in config.items() if k != "_target_"}, **kwargs)
    return instantiate(config, **kwargs)


def build_model(settings: dict, data: datasets.Tensors, device: torch.device) -> MLP:
    """The run's model with its initial weights: seed, build, move to the device, initialize.

    The global RNG is seeded with trainer.seed first, so the same seed always gives the same
    weights on the same device (the vectorized launcher builds each member the same way).
    """
    m = settings["model"]
    seed = settings["trainer"]["seed"]
    if device.type == "cpu":
        # What torch.manual_seed does for the CPU, without also queueing a seed (and a captured
        # stack, ~1 ms) for each accelerator backend: a vectorized group builds hundreds of models.
        torch.random.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)
    model = construct(m, in_features=data.in_features, num_classes=data.num_classes).to(device)
    apply_init(model, settings["init"], settings["bias"], m["activation"], m["negative_slope"])
    # The parameterization's factors: on the draw here, the multipliers in the forward pass, the optimizer's (param.py)
    model.scales = param.scales_of(settings, [tuple(l.weight.shape) for l in model.linears])
    param.rescale([l.weight for l in model.linears], [l.bias for l in model.linears], model.scales)
    data_pass = getattr(resolve(settings["init"]["_target_"]), "data_pass", None)
    if data_pass is not None:  # a data-dependent init (LSUV): one training batch, the same for a seed on any path
        pick = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed))[: settings["trainer"]["batch_size"]]
        kwargs = resolve_auto(settings["init"], m["activation"], m["negative_slope"],
                              theory.bias_moments(settings["bias"]))
        passes = data_pass(model, data.train_x[pick.to(data.train_x.device)], **kwargs)
        log.debug(f"{settings['init']['_target_']}: data pass done ({passes})")
    return model


def build_optimizer(settings: dict, model: MLP) -> torch.optim.Optimizer:
    """The run's optimizer over the model's parameters, with the parameterization's per-layer learning-rate
    and weight-decay factors (param.param_groups; the rate itself is set each step: param.set_rates)."""
    optim = settings["optim"]
    params = param.param_groups([(l.weight, l.bias) for l in model.linears], model.scales,
                                optim.get("weight_decay", 0.0))
    if all(isinstance(p, torch.Tensor) for p in params):
        return instantiate(optim, params=params, lr=settings["lr"]["value"], _convert_="all")
    # groups holding tensors: called directly (instantiate would copy dicts of tensors into a config)
    optimizer = resolve(optim["_target_"])(params, lr=settings["lr"]["value"],
                                           **{k: v for k, v in optim.items() if k not in ("_target_", "weight_decay")})
    param.set_rates(optimizer, settings["lr"]["value"])
    return optimizer


def symmetric_of(model: MLP) -> list[int]:
    """The hidden layers whose units `model` starts with identical (init.symmetric_layers)."""
    return symmetric_layers([l.weight for l in model.linears], [l.bias for l in model.linears])


def steps_of(settings: dict, num_samples: int) -> tuple[int, int]:
    """(steps per epoch, total steps) of a run: epochs of batches, capped by trainer.max_steps."""
    t = settings["trainer"]
    per_epoch = math.ceil(num_samples / t["batch_size"])
    total = t["epochs"] * per_epoch
    return per_epoch, total if t["max_steps"] is None else min(total, t["max_steps"])


class Training:
    """The state of one training run; `fit()` runs it, and the tables hold what it recorded so far."""

    def __init__(self, settings: dict, device: torch.device) -> None:
        t = settings["trainer"]
        self.settings, self.device, self.trainer = settings, device, t
        matmul_precision(t["tf32"])
        self.data = datasets.load(settings["data"], device)
        self.shuffle = torch.Generator().manual_seed(t["seed"])
        self._fixed: Optional[torch.Tensor] = None  # trainer.fixed_batch's batch
        self.model = build_model(settings, self.data, device)
        self.symmetric = symmetric_of(self.model)
        self.theory = predictions.for_model(self.model, settings["model"], self.data.input_second_moment)
        self.jacobian = jacobian.for_run(self.model, self.data.train_x, t["jacobian_inputs"])
        self.optimizer = build_optimizer(settings, self.model)
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
        self.graphs: Optional[graphs.StepGraphs] = None
        if graphs.wanted(t, device):
            self.graphs = graphs.StepGraphs(self._device_step, self._after_values, self.recorder, device,
                                            params=list(self.model.parameters()))

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
        t, y_all = self.trainer, self.data.train_y
        order = torch.randperm(len(y_all), generator=self.shuffle).to(self.device)
        batches = order.split(t["batch_size"])[: self.total_steps - self.step]
        if t.get("fixed_batch"):  # the first batch of the first epoch, at every step
            self._fixed = batches[0] if self._fixed is None else self._fixed
            batches = [self._fixed] * len(batches)
        losses = []
        show = t["progress"] and sys.stderr.isatty()
        # No tqdm object at all when the bar is off: the loop runs thousands of times.
        steps = tqdm(batches, desc=f"epoch {epoch}", unit="step", leave=False) if show else batches
        lr = None
        checks = LogStepChecks(self.device)
        bad_step: Optional[int] = None  # the first log step whose loss is not finite: the run stops there
        for idx in steps:
            new_lr = self.lr_at(self.step, total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch)
            if new_lr != lr:
                lr = new_lr
                param.set_rates(self.optimizer, lr)
            log_step = self.step % t["log_every"] == 0
            record = log_step and t["record"]
            if self.graphs is not None:  # the graph's loss is overwritten by its next replay
                loss = self.graphs.step(idx, record).clone()
            else:
                loss = self._device_step(idx, record)
            self.optimizer.step()
            losses.append(loss.detach())
            self.step += 1
            if record:
                # A graph's values are overwritten by its next replay.
                self.recorder.append(self.graphs.after_step().clone() if self.graphs else self._after_values(),
                                     self.step - 1, epoch)
            if log_step:
                self.curves.append((self.step - 1, epoch, "lr", lr))
                # The loss is checked at log steps only, and read without waiting for the device
                # (finite_checks); fit() finds the exact first non-finite step afterwards.
                checks.add(self.step - 1, loss)
                if (bad_step := checks.first_not_finite()) is not None:
                    break
            if stuck_check_due(t["stop_on"], self.step, self.diagnose_cfg["window"]):
                # (the stuck check reads the losses, so it waits for the device anyway)
                if (bad_step := checks.first_not_finite(wait=True)) is not None or self._stuck(epoch, losses):
                    break
        if bad_step is None:
            bad_step = checks.first_not_finite(wait=True)
        if bad_step is not None:
            self._roll_back(bad_step, losses)
        losses = torch.stack(losses) if losses else torch.empty(0)
        first = self.step - len(losses)
        self.curves += [(first + i, epoch, "train_loss", v) for i, v in enumerate(losses.tolist())]
        return losses

    def _roll_back(self, log_step: int, losses: list) -> None:
        """Forget the steps after `log_step`, taken before its check came back (finite_checks): the run
        stops there, with the records of a loop that stopped at once. `losses`: this epoch's."""
        del losses[len(losses) - (self.step - 1 - log_step):]
        self.step = log_step + 1
        self.recorder.truncate(log_step)
        while self.curves and self.curves[-1][0] > log_step:  # this epoch's learning rates
            self.curves.pop()

    def _after_values(self) -> torch.Tensor:
        """The recorder's values for this log step, once the optimizer has stepped (Recorder.after_values)."""
        return self.recorder.after_values(Layers.of_model(self.model))

    def _device_step(self, idx: torch.Tensor, record: bool, update: bool = True) -> torch.Tensor:
        """Forward, backward and the probes' before_step on the batch `idx`; the batch loss.

        The optimizer's update stays outside (`update` is for graphs.StepGraphs' interface): a
        learning rate that a schedule changes each step is a Python float in torch's optimizers,
        which a captured graph would freeze.
        """
        taps = [] if record else None
        # index_select: the same rows as train_x[idx], in half the time on the CPU
        loss = F.cross_entropy(self.model(self.data.train_x.index_select(0, idx), taps), self.data.train_y.index_select(0, idx))
        # Fresh gradients, also under a graph: it writes them where its capture made them, and
        # StepGraphs points .grad there after each replay (no zeroing, no accumulating).
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if record:
            self.recorder.before_step(Layers.of_model(self.model, taps))
        return loss

    def outcome(self, status: str) -> Outcome:
        layers, curves = self.tables()
        layers = predictions.with_predictions(self.theory, layers)
        return Outcome(status, self.metrics, layers, curves, self.context(status), self.step, self.stopped,
                       theory=self.theory, jacobian=self.jacobian)

    def context(self, status: str = "completed") -> Context:
        m = self.settings["model"]
        return Context(num_classes=self.data.num_classes, activation=m["activation"],
                       output_activation=m["output_activation"], status=status, diverged_at_step=self.diverged_at,
                       dead_outputs=self.last_eval.dead_outputs if self.last_eval else [],
                       chance_accuracy=self.data.chance_accuracy, symmetric_layers=self.symmetric)

    def _stuck(self, epoch: int, losses: list) -> bool:
        """With trainer.stop_on=[stuck], at a step where stuck_check_due: has the run been stuck a window long?"""
        layers, curves = self.tables()
        finding = stuck_while_training(layers, curves, epoch, self.step - len(losses), torch.stack(losses).tolist(),
                                       self.context(), self.diagnose_cfg)
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
