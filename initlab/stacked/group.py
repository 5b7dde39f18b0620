"""Train a group of compatible runs as one stacked model; one Outcome per member.

The loop mirrors training.Training step for step (same batches, learning rates, log steps,
divergence checks, evaluations and early stops), so each member's records are the ones its
ordinary run would write.
"""

from __future__ import annotations

import json
import logging
import math
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from initlab.build import data as datasets
from initlab.train.gpu import graphs
from initlab.train import jacobian
from initlab.build import param, schedule
from initlab.diagnosis.evidence import Context
from initlab.store.keys import PER_MEMBER_GROUPS, PER_MEMBER_KEYS
from initlab.diagnosis.stuck import stuck_check_due, stuck_while_training
from initlab.train.finite_checks import LogStepChecks
from initlab.build.environment import matmul_precision
from initlab.train.recorder import Recorder
from initlab.stacked import at_init
from initlab.stacked.member_records import MemberRecords, by_member, member_tables
from initlab.stacked.models import OPTIMIZERS, StackedMLP, evaluate_members
from initlab.train.loop import Outcome, build_model, steps_of

log = logging.getLogger("initlab")

# Settings that may differ inside a group; everything else must match.


def group_key(settings: dict) -> str:
    """Runs with the same key can be trained together: same architecture, data and schedule length."""
    shared = {k: v for k, v in settings.items() if k not in PER_MEMBER_GROUPS}
    for key in PER_MEMBER_KEYS:  # trainer.seed
        group, leaf = key.split(".", 1)
        shared[group] = {k: v for k, v in shared[group].items() if k != leaf}
    shared["optimizer"] = settings["optim"]["_target_"]
    return json.dumps(shared, sort_keys=True)


class GroupTraining:
    """The state of one stacked group; `fit()` trains it, `outcome(k)` is member k's result."""

    def __init__(self, members: list[dict], device: torch.device) -> None:
        base = members[0]
        self.members, self.device, self.trainer = members, device, base["trainer"]
        matmul_precision(base["trainer"]["tf32"])
        self.data = datasets.load(base["data"], device)
        self.net = StackedMLP([build_model(s, self.data, device) for s in members])
        # What an ordinary run measures at init, for every member in one pass (at_init.py). J J^T here (the
        # weights change once training starts), the spectra on a thread while the group trains
        # (jacobian.singular_values_of: the CPU's eigendecompositions).
        self.symmetric = at_init.symmetric_layers(self.net)
        self.theory = at_init.theory(self.net, base["model"], self.data.input_second_moment)
        self._jacobian = _in_background(_spectra, at_init.grams(self.net, self.data.train_x,
                                                               base["trainer"]["jacobian_inputs"]))
        self.optimizer = OPTIMIZERS[base["optim"]["_target_"]](self.net.parameters(), [s["optim"] for s in members],
                                                               param.lr_factors(self.net.scales),
                                                               param.decay_factors(self.net.scales))
        self.lr_at = [schedule.build(s["lr"]) for s in members]
        self.constant_lr = all(s["lr"]["_target_"] == "initlab.schedule.constant" for s in members)
        self.shuffles = [torch.Generator().manual_seed(s["trainer"]["seed"]) for s in members]
        self._fixed: Optional[torch.Tensor] = None  # trainer.fixed_batch's batches
        self.steps_per_epoch, self.total_steps = steps_of(base, len(self.data.train_y))
        self.recorder = Recorder()
        n = len(members)
        self.active = torch.ones(n, dtype=torch.bool)  # still training (not diverged, not stopped)
        self.end_step = [self.total_steps] * n  # steps each member trained
        self.curves: list[list[tuple]] = [[] for _ in range(n)]  # per member: its per-epoch rows
        # The per-step and per-log-step curves of every member at once, as arrays (a row per step for
        # 1,024 members was 300,000 tuples an epoch, made while the GPU waited): `series` takes a
        # member's out. Per epoch (first step, epoch, losses (steps, members), rows of each member);
        # per log step (step, epoch, learning rates, members still training).
        self.loss_rows: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        self.lr_rows: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        self._lr_arrays: Optional[tuple] = None  # lr_rows stacked (steps, epochs, rates, active), made when asked
        self._loss_arrays: Optional[tuple] = None  # loss_rows stacked (chunks, steps, epochs, losses, trained)
        self.eval_rows: list[list[tuple]] = [[] for _ in range(n)]
        self.metrics: list[dict] = [{} for _ in range(n)]
        self.status = ["completed"] * n
        self.diverged_at: list[Optional[int]] = [None] * n
        self.stopped: list[Optional[dict]] = [None] * n
        self.dead_outputs: list[list[int]] = [[] for _ in range(n)]
        self.step = 0
        self.rates = torch.zeros(n, device=device)  # each member's learning rate for this step (0 once frozen)
        self._rates_set: Optional[torch.Tensor] = None  # what self.rates holds, on the CPU
        self.graphs: Optional[graphs.StepGraphs] = None
        if graphs.wanted(self.trainer, device):  # (the gradients need not outlive a step: see _device_step)
            self.graphs = graphs.StepGraphs(self._device_step, self._after_values, self.recorder, device)

    def _rates(self) -> torch.Tensor:
        """Every member's learning rate at this step, in double: recorded exactly as the ordinary run does."""
        rates = [f(self.step, total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch) for f in self.lr_at]
        return torch.tensor(rates, dtype=torch.float64)

    def fit(self) -> None:
        # The next epoch's batch orders are drawn on a thread while this epoch trains (torch releases
        # the GIL): 1,024 members' permutations of 60,000 samples take ~0.4 s, which a GPU waited for.
        with ThreadPoolExecutor(1, thread_name_prefix="initlab-orders") as ahead:
            self._fit(ahead)

    def _orders(self) -> torch.Tensor:
        """Each member's order of the training samples for an epoch, (members, samples), on the CPU:
        its own generator, as its ordinary run draws it."""
        return torch.stack([torch.randperm(len(self.data.train_y), generator=g) for g in self.shuffles])

    def _fit(self, ahead: ThreadPoolExecutor) -> None:
        t, m = self.trainer, len(self.members)
        rates = self._rates() if self.constant_lr else None
        epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        upcoming = ahead.submit(self._orders)
        for epoch in range(1, epochs + 1):
            if not self.active.any():
                break
            first = self.step
            orders = upcoming.result().to(self.device)
            if epoch < epochs:
                upcoming = ahead.submit(self._orders)
            losses = []
            training = self.active.clone()  # members that train in this epoch
            checks = LogStepChecks(self.device)
            batches = orders.split(t["batch_size"], dim=1)[: self.total_steps - self.step]
            if t.get("fixed_batch"):  # each member's first batch of the first epoch, at every step (as loop.py)
                self._fixed = batches[0] if self._fixed is None else self._fixed
                batches = [self._fixed] * len(batches)
            for idx in batches:
                lr = (rates if rates is not None else self._rates())
                self._set_rates(lr)
                log_step = self.step % t["log_every"] == 0
                record = log_step and t["record"]
                if self.graphs is not None:  # the graph's loss is overwritten by its next replay
                    loss = self.graphs.step(idx, record).clone()
                else:
                    loss = self._device_step(idx, record)
                losses.append(loss.detach())
                self.step += 1
                if record:
                    # A graph's values are overwritten by its next replay.
                    self.recorder.append(self.graphs.after_step().clone() if self.graphs else self._after_values(),
                                         self.step - 1, epoch)
                if log_step:
                    self.lr_rows.append((self.step - 1, epoch, lr.numpy(), self.active.numpy().copy()))
                    # read without waiting for the device (finite_checks)
                    checks.add(self.step - 1, loss)
                    self._freeze(checks.ready())
                if stuck_check_due(t["stop_on"], self.step, self.members[0]["diagnose"]["window"]):
                    # (the stuck check reads the losses, so it waits for the device anyway)
                    self._freeze(checks.ready(wait=True))
                    self._stop_stuck(epoch, first, losses)
                if not self.active.any():
                    break
            self._freeze(checks.ready(wait=True))
            self._end_epoch(epoch, first, torch.stack(losses).cpu() if losses else torch.empty(0, m), training)
            accs = sorted(a for k in training.nonzero().flatten().tolist()
                          if math.isfinite(a := self.metrics[k].get("test_accuracy", math.nan)))
            spread = f"test_acc min {accs[0]:.2%} median {accs[len(accs) // 2]:.2%} max {accs[-1]:.2%}" if accs else ""
            log.info(f"group epoch {epoch}/{epochs} | "
                     f"{int(self.active.sum())}/{m} members still training | {spread}")

    def _set_rates(self, lr: torch.Tensor) -> None:
        """Put this step's per-member rates (0 for frozen members) on the device, when they changed."""
        rates = (lr * self.active).to(torch.float32)
        if self._rates_set is None or not torch.equal(rates, self._rates_set):
            if self.device.type == "cuda":
                # From pinned memory, without blocking: a copy from ordinary memory waits until the
                # device has caught up, at every step of a schedule. (torch keeps a pinned block until
                # the copies that read it are done.)
                self.rates.copy_(rates.pin_memory(), non_blocking=True)
            else:
                self.rates.copy_(rates)
            self._rates_set = rates

    def _after_values(self) -> torch.Tensor:
        """The recorder's values for this log step, once the optimizer has stepped (Recorder.after_values)."""
        return self.recorder.after_values(self.net.layers())

    def _device_step(self, idx: torch.Tensor, record: bool, update: bool = True) -> torch.Tensor:
        """One step of every member on its batch of `idx` (members, batch): forward, backward, the
        probes' before_step and, with `update`, the optimizer's update; each member's loss."""
        m = len(self.members)
        taps = [] if record else None
        rows = idx.flatten()  # index_select: the same rows as train_x[idx], in half the time on the CPU
        out = self.net(self.data.train_x.index_select(0, rows).view(*idx.shape, -1), taps)
        loss = F.cross_entropy(out.flatten(0, 1), self.data.train_y.index_select(0, rows), reduction="none").view(m, -1).mean(1)
        # Gradients made anew (autograd hands each its computed gradient, no zeroing, no add), under a
        # CUDA graph too: the update that reads them is in the same graph (PyTorch's whole-network
        # capture), and nothing outside a step reads them.
        self.net.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: each gets the gradient of its own loss
        if record:
            self.recorder.before_step(self.net.layers(taps))
        if update:
            self.optimizer.step(self.rates)
        return loss

    def _freeze(self, checked: list[tuple[int, torch.Tensor]]) -> None:
        """Freeze the members whose loss was not finite at a checked log step, as their ordinary runs
        stop there (finite_checks: a check comes back a few steps late). What a member did after that
        step is not its record: its rows end at end_step, and its learning-rate rows end where it
        stopped training, so the rows of the log steps taken since are marked."""
        for log_step, finite in checked:
            bad = (~finite & self.active).nonzero().flatten().tolist()
            if not bad:
                continue
            for k in bad:
                self.active[k], self.end_step[k] = False, log_step + 1
            for row in reversed(self.lr_rows):
                if row[0] <= log_step:
                    break
                row[3][bad] = False

    def _stop_stuck(self, epoch: int, first: int, losses: list) -> None:
        """At a step where stuck_check_due: freeze the members stuck for a window."""
        now = torch.stack(losses).cpu()
        for k in self.active.nonzero().flatten().tolist():
            layers, curves = self._tables(k, self.step - 1)
            finding = stuck_while_training(layers, curves, epoch, first, now[:, k].tolist(), self.context(k),
                                           self.members[k]["diagnose"])
            if finding is not None:
                self.active[k], self.end_step[k] = False, self.step
                self.stopped[k] = {"reason": "stuck", "step": self.step, "finding": finding.message}

    def _end_epoch(self, epoch: int, first: int, losses: torch.Tensor, training: torch.Tensor) -> None:
        evaluate = []
        rows = np.zeros(len(self.members), dtype=np.int64)  # each member's batch losses of this epoch
        self.loss_rows.append((first, epoch, losses.numpy(), rows))
        for k in training.nonzero().flatten().tolist():
            rows[k] = min(len(losses), self.end_step[k] - first)
            mine = losses[: rows[k], k]
            epoch_loss = mine.mean().item() if len(mine) else float("nan")
            if not math.isfinite(epoch_loss):
                bad = (~torch.isfinite(mine)).nonzero()
                self.diverged_at[k] = first + int(bad[0]) if len(bad) else self.end_step[k]
                self.status[k] = "diverged"
                self.active[k] = False
                self.metrics[k] = {"train_loss": epoch_loss, "test_loss": float("nan"), "test_accuracy": float("nan"),
                                   "steps": self.end_step[k]}
                continue
            evaluate.append((k, epoch_loss))
        if not evaluate:
            return
        results = evaluate_members(self.net, self.data.test_x, self.data.test_y)
        for k, epoch_loss in evaluate:
            ev, done = results[k], min(self.step, self.end_step[k])
            self.curves[k] += [(done, epoch, "epoch_train_loss", epoch_loss), (done, epoch, "test_loss", ev.loss),
                               (done, epoch, "test_accuracy", ev.accuracy)]
            for layer, (dead, sat) in enumerate(zip(ev.dead_fraction, ev.saturated_fraction)):
                self.eval_rows[k] += [(done, epoch, layer, "eval_dead_fraction", dead),
                                      (done, epoch, layer, "eval_saturated_fraction", sat)]
            self.metrics[k] = {"train_loss": epoch_loss, "test_loss": ev.loss, "test_accuracy": ev.accuracy,
                               "steps": done, "epochs": round(done / self.steps_per_epoch, 4)}
            self.dead_outputs[k] = ev.dead_outputs

    def context(self, k: int) -> Context:
        m = self.members[k]["model"]
        return Context(num_classes=self.data.num_classes, activation=m["activation"],
                       output_activation=m["output_activation"], status=self.status[k],
                       diverged_at_step=self.diverged_at[k], dead_outputs=self.dead_outputs[k],
                       chance_accuracy=self.data.chance_accuracy, symmetric_layers=self.symmetric[k])

    def _tables(self, k: int, last_step: Optional[int] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        return member_tables(*self.recorder.member_values(k, last_step), self.recorder.metrics, self.eval_rows[k],
                       self.curves[k], self.series(k))

    def series(self, k: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """Member k's per-step curves (train_loss, lr) as (metric, steps, epochs, values) arrays: the
        batch losses of the steps it trained, the learning rate at each log step it was training."""
        m = len(self.members)
        if self._loss_arrays is None or self._loss_arrays[0] != len(self.loss_rows):  # every member's, stacked once
            chunks = self.loss_rows
            self._loss_arrays = (len(chunks),
                                 np.concatenate([np.arange(f, f + len(v)) for f, _, v, _ in chunks] + [[]]).astype(np.int64),
                                 np.concatenate([np.full(len(v), e) for _, e, v, _ in chunks] + [[]]).astype(np.int64),
                                 *by_member([v for _, _, v, _ in chunks],
                                             [np.arange(len(v))[:, None] < n[None, :] for _, _, v, n in chunks], m))
        if self._lr_arrays is None or self._lr_arrays[0] != len(self.lr_rows):
            rows = self.lr_rows
            self._lr_arrays = (len(rows), np.asarray([r[0] for r in rows], dtype=np.int64),
                               np.asarray([r[1] for r in rows], dtype=np.int64),
                               *by_member([np.stack([r[2] for r in rows])] if rows else [],
                                           [np.stack([r[3] for r in rows])] if rows else [], m))
        _, steps, epochs, losses, trained = self._loss_arrays
        _, lr_steps, lr_epochs, rates, active = self._lr_arrays
        mine, logged = trained[k], active[k]
        return [("train_loss", steps[mine], epochs[mine], losses[k, mine].astype(np.float64)),
                ("lr", lr_steps[logged], lr_epochs[logged], rates[k, logged].astype(np.float64))]

    def records(self, k: int) -> "MemberRecords":
        """Member k's result before its tables are made (MemberRecords.outcome makes them)."""
        values, index = self.recorder.member_values(k, self.end_step[k] - 1)
        return MemberRecords(self.status[k], self.metrics[k], values, index, self.recorder.metrics, self.eval_rows[k],
                             self.curves[k], self.series(k), self.context(k), min(self.end_step[k], self.step), self.stopped[k],
                             self.theory[k], self.jacobian[k])

    def outcome(self, k: int) -> Outcome:
        return self.records(k).outcome()

    @property
    def jacobian(self) -> list[Optional[dict]]:
        """Each member's Jacobian spectrum at init (jacobian.summary_of), once the thread has it."""
        return self._jacobian.result()


def _spectra(grams: list[Optional[torch.Tensor]]) -> list[Optional[dict]]:
    return [None if k is None else jacobian.summary_of(k) for k in grams]


def _in_background(fn, *args) -> Future:
    """fn(*args) on a thread of its own; its Future."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="initlab-jacobian")
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)  # the thread ends once fn returns
