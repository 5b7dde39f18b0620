"""Learning-rate schedules: pure functions of the step, one per option in ``conf/lr/``.

Each returns the learning rate for optimizer step `step` (0-based) of a run of `total_steps`
steps with `steps_per_epoch` steps an epoch; the other keywords are the option's YAML keys.
Pure functions (no scheduler object) so a schedule is easy to test and to evaluate for many
runs at once.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Callable

from initlab.config.schema import AT_LEAST_ONE, DECAY, NON_NEGATIVE, POSITIVE, checks, one_of
from initlab.config.targets import resolve

Rate = Annotated[float, POSITIVE]
Floor = Annotated[float, NON_NEGATIVE]
FLOOR_BELOW_RATE = ("min_value must not exceed value", lambda c: c["min_value"] <= c["value"])


def constant(step: int, *, total_steps: int, steps_per_epoch: int, value: Rate) -> float:
    """The same rate throughout."""
    return value


def step(step: int, *, total_steps: int, steps_per_epoch: int, value: Rate, gamma: Annotated[float, DECAY],
         step_epochs: Annotated[int, AT_LEAST_ONE]) -> float:
    """`value` times `gamma` for every `step_epochs` full epochs done (torch's StepLR, by epoch)."""
    return value * gamma ** ((step // steps_per_epoch) // step_epochs)


@checks(FLOOR_BELOW_RATE)
def cosine(step: int, *, total_steps: int, steps_per_epoch: int, value: Rate, min_value: Floor) -> float:
    """Cosine decay from `value` at step 0 to `min_value` at the last step (Loshchilov & Hutter 2017)."""
    progress = step / max(total_steps - 1, 1)
    return min_value + 0.5 * (value - min_value) * (1.0 + math.cos(math.pi * progress))


@checks(FLOOR_BELOW_RATE)
def warmup(
    step: int,
    *,
    total_steps: int,
    steps_per_epoch: int,
    value: Rate,
    warmup_epochs: Annotated[float, POSITIVE],
    then: Annotated[str, one_of("constant", "cosine")],
    min_value: Floor,
) -> float:
    """Linear warm-up to `value` over `warmup_epochs` (Goyal et al. 2017), then `then`."""
    warm = max(1, round(warmup_epochs * steps_per_epoch))
    if step < warm:
        return value * (step + 1) / warm
    if then == "cosine":
        return cosine(step - warm, total_steps=total_steps - warm, steps_per_epoch=steps_per_epoch,
                      value=value, min_value=min_value)
    return value


def build(lr_cfg: dict) -> Callable[..., float]:
    """The schedule `lr_cfg` names, with its settings bound: call it as f(step, total_steps=, steps_per_epoch=)."""
    settings = {k: v for k, v in lr_cfg.items() if k != "_target_"}
    return functools.partial(resolve(lr_cfg["_target_"]), **settings)
