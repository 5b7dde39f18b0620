"""The config schema: the rules a value must pass, and where each config group's keys come from.

A rule is a predicate and the words that say what it allows. Every group that names a callable
(`init`, `bias`, `model`, `lr`, `optim`, `data.source`) takes its keys, types and defaults from that
callable's signature (SIGNED): a rule rides on an annotation (`std: Annotated[float, NON_NEGATIVE]`)
and cross-key checks on the callable (`@checks(...)`) where the callable is initlab's or a user's;
torch's optimizers and torchvision's datasets, whose signatures carry types but no ranges, get
their rules by key name (OPTIMIZER_RULES) and their cross-key checks from their Signed entry. The
groups that name no callable (data, trainer, diagnose) are dataclasses; a field's metadata is its
rule. check.py checks a composed config against both.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, ClassVar, Optional

from initlab import activations

# Values an init scheme's keys may hold besides numbers: they follow model.activation (and the bias).
AUTO = "auto"  # a gain, nonlinearity or `a` that follows model.activation
AUTO_KEYS = ("gain", "nonlinearity", "a")
CRITICAL = "critical"  # a gain at the edge of chaos of model.activation with this bias (theory.critical_sigma_w2)

ACTIVATIONS = activations.NAMES
STOPPABLE = ("stuck", "diverged")  # findings that can end a run early


# --- rules: a predicate and the words that say what it allows -------------------------------


def rule(ok: Callable[[Any], bool], allowed: str) -> dict:
    """A check on one value; `allowed` completes "must be ..." in the error message."""
    return {"ok": ok, "allowed": allowed}


def checks(*relations: tuple[str, Callable[[dict], bool]]) -> Callable:
    """Attach checks across a callable's keys, (message, predicate on the settings dict), to it."""
    def attach(fn: Callable) -> Callable:
        fn.relations = relations
        return fn
    return attach


POSITIVE = rule(lambda v: v > 0, "a number > 0")
NON_NEGATIVE = rule(lambda v: v >= 0, "a number >= 0")
AT_LEAST_ONE = rule(lambda v: v >= 1, "an integer >= 1")
AT_LEAST_TWO = rule(lambda v: v >= 2, "an integer >= 2")
FRACTION = rule(lambda v: 0 <= v < 1, "a number in [0, 1)")
DECAY = rule(lambda v: 0 < v <= 1, "a number in (0, 1]")
ANY = rule(lambda v: True, "")
DEVICE = rule(
    lambda v: re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None,
    "auto, cpu, cuda, cuda:N or mps",
)
BETAS = rule(lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)")


def one_of(*choices: str) -> dict:
    return rule(lambda v: v in choices, "one of " + ", ".join(choices))


def arg(rule: dict = ANY) -> Any:
    """A schema field: required (the YAML must give it) and checked by `rule`."""
    return field(default=MISSING, metadata=rule)


# --- the schema of the groups that name no callable ---------------------------------------


@dataclass
class Schema:
    # Checks across fields: (message, predicate on the values dict).
    relations: ClassVar[tuple[tuple[str, Callable[[dict], bool]], ...]] = ()


@dataclass
class Data(Schema):
    name: str = arg()
    source: dict = arg()  # checked against the source's own schema
    mean: float = arg()
    std: float = arg(POSITIVE)
    cache: bool = arg()
    cache_dir: str = arg()


@dataclass
class Trainer(Schema):
    epochs: int = arg(AT_LEAST_ONE)
    batch_size: int = arg(AT_LEAST_ONE)
    seed: int = arg(rule(lambda v: 0 <= v < 2**63, "an integer >= 0"))
    device: str = arg(DEVICE)
    log_every: int = arg(AT_LEAST_ONE)
    record: bool = arg()
    max_steps: Optional[int] = arg(AT_LEAST_ONE)
    progress: bool = arg()
    stop_on: list[str] = arg(rule(lambda v: set(v) <= set(STOPPABLE), "a list of " + ", ".join(STOPPABLE)))
    jacobian_inputs: int = arg(rule(lambda v: v >= 0, "an integer >= 0"))
    fixed_batch: bool = arg()
    tf32: bool = arg()
    cuda_graphs: bool = arg()


@dataclass
class Diagnose(Schema):
    window: int = arg(AT_LEAST_TWO)
    flat_tol: float = arg(NON_NEGATIVE)
    zero_grad: float = arg(NON_NEGATIVE)
    vanishing_ratio: float = arg(POSITIVE)
    vanishing_norm: float = arg(POSITIVE)
    high_loss: float = arg(NON_NEGATIVE)
    exploding_growth: float = arg(POSITIVE)
    exploding_norm: float = arg(POSITIVE)
    exploding_min_norm: float = arg(NON_NEGATIVE)
    dead_fraction: float = arg(FRACTION)
    saturation: float = arg(FRACTION)
    stuck_log_steps: int = arg(AT_LEAST_TWO)
    progress_steps: int = arg(AT_LEAST_ONE)
    min_loss_fall: float = arg(FRACTION)
    chance_margin: float = arg(FRACTION)
    init_loss_ratio: float = arg(POSITIVE)
    init_grad_norm: float = arg(POSITIVE)
    init_small_logit_std: float = arg(POSITIVE)
    init_small_grad_norm: float = arg(POSITIVE)
    small_update_ratio: float = arg(POSITIVE)
    weak_signal: float = arg(POSITIVE)


FIXED = {"data": Data, "trainer": Trainer, "diagnose": Diagnose}


@dataclass(frozen=True)
class Signed:
    """A group node checked against the signature of the callable its `_target_` names. `takes` is
    what the first positional parameter receives (None: no parameter is skipped, a dataset's `root`
    is a setting), `filled` the keys initlab passes or decides itself, `targets` the callables the
    node may name (None: any), `examples` what a wrong one is told to name; `rules` by key and
    `relations` across keys for callables that cannot carry them (torch's, torchvision's)."""

    takes: Optional[str]
    filled: tuple[str, ...]
    targets: Optional[tuple[str, ...]]
    examples: str
    rules: dict = field(default_factory=dict)
    relations: tuple[tuple[str, Callable[[dict], bool]], ...] = ()


# torch's optimizers: ranges by key name (torch checks some of them only when the optimizer is built,
# after the sweep has started; the stacked optimizers of the vectorized launcher never would).
OPTIMIZER_RULES = {"weight_decay": NON_NEGATIVE, "momentum": FRACTION, "dampening": FRACTION,
                   "eps": POSITIVE, "betas": BETAS}
# The optimizers initlab builds, and the kind of update each makes: a parameterization scales an SGD-like
# update's learning rate differently from an Adam-like (entrywise normalized) one's (build/param.py).
UPDATES = {"torch.optim.SGD": "sgd", "torch.optim.Adam": "adam", "torch.optim.AdamW": "adam"}
# The standard parameterization (build/param.py): the default, and what every run before the param group computed
STANDARD_PARAM = "initlab.param.standard"
OPTIMIZERS = tuple(UPDATES)
NESTEROV = ("nesterov needs momentum > 0 and dampening = 0",
            lambda c: not c.get("nesterov") or (c.get("momentum", 0) > 0 and c.get("dampening", 0) == 0))
# Datasets whose idx files initlab reads (build/data.py); a dataset's transforms are initlab's.
DATASETS = ("torchvision.datasets.MNIST", "torchvision.datasets.FashionMNIST", "torchvision.datasets.KMNIST",
            "initlab.data.Synthetic")

SCHEMES = "initlab.init.*, torch.nn.init.*, or one of yours on PYTHONPATH"
SIGNED = {
    "model": Signed("input features", ("num_classes",), ("initlab.model.MLP",), "initlab.model.MLP"),
    "lr": Signed("step", ("total_steps", "steps_per_epoch"), None, "initlab.schedule.*, or one of yours on PYTHONPATH"),
    # the rate is the lr group's (lr.value): an optimizer's own `lr` is not a setting here
    "optim": Signed("parameters", ("lr",), OPTIMIZERS, ", ".join(OPTIMIZERS), OPTIMIZER_RULES, (NESTEROV,)),
    "data.source": Signed(None, ("train", "transform", "target_transform"), DATASETS, ", ".join(DATASETS)),
    "init": Signed("weight matrix", (), None, SCHEMES),
    "bias": Signed("bias vector", ("weight",), None, SCHEMES),
    "param": Signed(None, (), None, "initlab.param.standard, initlab.param.ntk, initlab.param.mup, or one of yours"),
}
