"""A researcher's own init scheme, for `initlab --config-dir conf init=mine` (see the README)."""

import math
from typing import Annotated

from initlab.schema import POSITIVE


def scaled_normal_(w, *, scale: Annotated[float, POSITIVE] = 1.0):
    """N(0, scale² / fan_in): scale sqrt(2) is Kaiming's ReLU init, 1 is LeCun's.

    Written the plain way: initlab calls it under torch.no_grad(), once per layer, with the
    weight matrix (out_features, in_features). The annotation is its schema: initlab stops with
    one line on init.scale=0 or init.scale=big, before anything trains.
    """
    w.normal_(0.0, scale / math.sqrt(w.shape[1]))
