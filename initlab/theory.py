"""Mean-field signal propagation at init (Poole et al. 2016; Schoenholz et al. 2017).

For a wide MLP whose layer l has i.i.d. zero-mean weights with second moment sigma_w^2 / fan_in and
i.i.d. biases with mean mu_b and variance sigma_b^2, the pre-activations h^l of a given input are
Gaussian across units, h^l ~ N(mu_b, q^l) (a shifted Gaussian where mu_b != 0; the papers take
mu_b = 0, where sigma_b^2 is also the biases' second moment), and

    q^1 = sigma_w^2 q^0 + sigma_b^2              (q^0: the input's mean squared feature)
    q^l = sigma_w^2 E[phi(mu_b + sqrt(q^{l-1}) z)^2] + sigma_b^2,   z ~ N(0, 1)        (the length map)

(the weights' zero mean makes W h zero-mean whatever h's mean is: the second moment of phi enters).

q* is its fixed point; chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] is the factor by which each layer
multiplies the back-propagated gradient (and the slope of the correlation map at c = 1):
chi_1 < 1 is the ordered phase (gradients vanish over the depth scale xi = -1 / ln chi_1),
chi_1 > 1 the chaotic one (they explode), chi_1 = 1 the edge of chaos. Expectations are
Gaussian quadrature on each half line (the activations' kinks sit at 0), closed form for ReLU
without a bias mean. Where a net's weights are not zero-mean and random (a constant, a U(0, 1)
draw), none of this holds: train/predictions.py says so instead of predicting.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import numpy as np

from initlab.activations import ACTIVATIONS

POINTS = 200  # Gauss-Legendre nodes per half line
ITERATIONS = 100  # of the length map before fixed_point brackets its fixed point instead
PAIR_POINTS = 48  # per half line of each axis of the plane (two inputs): 192^2 nodes, ~2 ms a depth scale


# The mean and the variance every bias of a layer is drawn with, for the bias schemes where they are numbers.
_MOMENTS = {
    "initlab.bias.zeros_": lambda c: (0.0, 0.0),
    "torch.nn.init.zeros_": lambda c: (0.0, 0.0),
    "initlab.bias.constant_": lambda c: (float(c["value"]), 0.0),
    "initlab.bias.normal_": lambda c: (float(c.get("mean", 0.0)), float(c["std"]) ** 2),
}


def bias_moments(bias_cfg: dict) -> Optional[tuple[float, float]]:
    """(mu_b, sigma_b^2): the mean and the variance of a bias config's draws, or None when they are not
    numbers known before the draw (torch_default's depend on each layer's fan_in; a user's scheme is unknown)."""
    known = _MOMENTS.get((bias_cfg or {}).get("_target_"))
    return known(bias_cfg) if known is not None else None


def _phi(name: str, negative_slope: float = 0.01) -> tuple[Callable, Callable]:
    """(phi, phi') of an activation of the registry (initlab/activations.py), on numpy arrays."""
    known = ACTIVATIONS.get(name or "identity")
    if known is None:
        raise ValueError(f"no mean-field theory for activation {name!r}")
    return (lambda x: known.phi(x, negative_slope)), (lambda x: known.dphi(x, negative_slope))


@functools.lru_cache(maxsize=2)
def _nodes(points: int = POINTS) -> tuple[np.ndarray, np.ndarray]:
    # Gauss-Legendre on [0, 10] for each half of the line: every activation here is smooth on each
    # side of 0, and ReLU's, SELU's and leaky ReLU's derivatives jump there, which Gauss-Hermite
    # over the whole line gets wrong by ~10 %. Past 10 sigma the Gaussian weight is < 1e-22.
    x, w = _legendre(points)
    z = 5.0 * (x + 1.0)
    return z, 5.0 * w * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def gaussian_mean(f: Callable, q: float, mu: float = 0.0) -> float:
    """E[f(mu + sqrt(q) z)], z ~ N(0, 1). Centred: sum over the nodes of w (f(sqrt(q) z) + f(-sqrt(q) z));
    shifted: _shifted_means."""
    s = math.sqrt(max(q, 0.0))
    if mu == 0.0:
        z, w = _nodes()
        return float(np.sum(w * (f(s * z) + f(-s * z))))
    return float(_shifted_means(f, q, np.array([mu]), POINTS)[0])


def _shifted_means(f: Callable, q: float, mus: np.ndarray, points: int) -> np.ndarray:
    """E[f(m + sqrt(q) z)] for each m of `mus` (_shifted_nodes)."""
    xs, ws = _shifted_nodes(q, np.asarray(mus, dtype=float), points)
    return np.sum(ws * f(xs), axis=1)


def _shifted_nodes(q: float, mus: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights, a row per mean m, of E[f(m + sqrt(q) z)]: Gauss-Legendre on each side of 0 in
    x = m + sqrt(q) z over m +- 10 sqrt(q), so the activations' kinks (at 0) stay at a node boundary
    whatever the shift (past 10 sigma the Gaussian weight is < 1e-22)."""
    s = math.sqrt(max(q, 0.0))
    m = mus[:, None]
    if s == 0.0:
        return m, np.ones_like(m)
    x, w = _legendre(points)
    xs, ws = [], []
    for low, high in ((m - 10 * s, np.minimum(0.0, m + 10 * s)), (np.maximum(0.0, m - 10 * s), m + 10 * s)):
        width = np.maximum(high - low, 0.0)
        at = low + width * (x[None, :] + 1.0) / 2.0
        xs.append(at)
        ws.append(width / 2.0 * w[None, :] * np.exp(-0.5 * ((at - m) / s) ** 2) / (s * math.sqrt(2.0 * math.pi)))
    return np.concatenate(xs, axis=1), np.concatenate(ws, axis=1)


@functools.lru_cache(maxsize=4)
def _legendre(points: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(points)


def length_map(q: float, sigma_w2: float, sigma_b2: float, activation: str, negative_slope: float = 0.01,
               mu: float = 0.0) -> float:
    """q^l from q^{l-1}: sigma_w^2 E[phi(mu + sqrt(q) z)^2] + sigma_b^2 (ReLU, mu = 0: sigma_w^2 q / 2 + sigma_b^2)."""
    if activation == "relu" and mu == 0.0:
        return sigma_w2 * q / 2.0 + sigma_b2
    phi, _ = _phi(activation, negative_slope)
    return sigma_w2 * gaussian_mean(lambda x: phi(x) ** 2, q, mu) + sigma_b2


def chi1(q: float, sigma_w2: float, activation: str, negative_slope: float = 0.01, mu: float = 0.0) -> float:
    """sigma_w^2 E[phi'(mu + sqrt(q) z)^2]: the per-layer factor of the back-propagated gradient's square norm."""
    if activation == "relu" and mu == 0.0:
        return sigma_w2 / 2.0
    _, dphi = _phi(activation, negative_slope)
    return sigma_w2 * gaussian_mean(lambda x: dphi(x) ** 2, q, mu)


def fixed_point(sigma_w2: float, sigma_b2: float, activation: str, q0: float = 1.0, negative_slope: float = 0.01,
                steps: int = 2000, tol: float = 1e-10, mu: float = 0.0) -> Optional[float]:
    """q*, by iterating the length map from q0 (ReLU: sigma_b^2 / (1 - sigma_w^2 / 2) in closed form);
    None when there is none: the map grows without bound, or has not settled after `steps` layers."""
    if activation == "relu" and mu == 0.0:
        if sigma_w2 < 2.0:
            return sigma_b2 / (1.0 - sigma_w2 / 2.0)
        return q0 if sigma_w2 == 2.0 and sigma_b2 == 0.0 else None  # every q is fixed / q grows
    if activation == "tanh" and mu == 0.0:
        # The map is increasing and concave with q <= sigma_w^2 + sigma_b^2: one fixed point, found by
        # bisection (iterating crawls near the edge of chaos: q falls like 1/l when sigma_b^2 ~ 0).
        # (A bias mean breaks the monotonicity: E[tanh^2] can fall as q grows. Iterate then.)
        if sigma_b2 == 0.0 and sigma_w2 <= 1.0:
            return 0.0
        low, high = 0.0, sigma_w2 + sigma_b2
        for _ in range(200):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if length_map(mid, sigma_w2, sigma_b2, activation) > mid else (low, mid)
            if high - low <= tol * max(high, 1e-300):
                break
        return 0.5 * (low + high)
    q = q0
    for _ in range(min(steps, ITERATIONS)):  # then bracket: a map whose slope is near 1 at q* crawls
        nxt = length_map(q, sigma_w2, sigma_b2, activation, negative_slope, mu)
        if not math.isfinite(nxt) or nxt > 1e12:
            return None
        if abs(nxt - q) <= tol * max(1.0, q):
            return nxt
        q = nxt
    return _bracketed_fixed_point(q, sigma_w2, sigma_b2, activation, negative_slope, mu, tol)


def _bracketed_fixed_point(q: float, sigma_w2: float, sigma_b2: float, activation: str, negative_slope: float,
                           mu: float, tol: float) -> Optional[float]:
    """The fixed point the iteration from q crawls toward (a map whose slope is near 1 there, e.g. ReLU
    with a bias mean close to sigma_w^2 = 2), by bisection between q and where the map crosses the diagonal."""
    gap = lambda x: length_map(x, sigma_w2, sigma_b2, activation, negative_slope, mu) - x  # noqa: E731
    low = high = q
    rising = gap(q) > 0
    while (gap(high) > 0) if rising else (gap(low) < 0):
        if rising:
            high *= 2.0
            if high > 1e12:
                return None  # q grows without bound
        else:
            low /= 2.0
            if low < 1e-300:
                return 0.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if gap(mid) > 0 else (low, mid)
        if high - low <= tol * max(high, 1e-300):
            break
    return 0.5 * (low + high)


def depth_scale(chi: float) -> Optional[float]:
    """xi = -1 / ln chi_1: the depth over which the gradient's square norm changes by e (positive:
    it vanishes toward the input; negative: it explodes); None at chi_1 = 1 (the edge of chaos)."""
    if chi <= 0:
        return 0.0
    return None if abs(math.log(chi)) < 1e-12 else -1.0 / math.log(chi)


def critical_sigma_w2(sigma_b2: float, activation: str, negative_slope: float = 0.01, low: float = 0.5,
                      high: float = 8.0, mu: float = 0.0) -> float:
    """The sigma_w^2 where chi_1(q*) = 1 for these biases (variance sigma_b^2, mean mu): the edge of chaos.
    Closed form where chi_1 does not depend on q (ReLU: 2, leaky ReLU: 2 / (1 + slope^2), identity: 1,
    with mu = 0) and for tanh without biases (q* = 0, chi_1 = sigma_w^2 tanh'(0)^2: 1); bisection otherwise."""
    if activation in ("identity", None):
        return 1.0
    if mu == 0.0:
        if activation == "relu":
            return 2.0
        if activation == "leaky_relu":
            return 2.0 / (1.0 + negative_slope ** 2)
        if activation == "tanh" and sigma_b2 == 0.0:
            return 1.0

    def excess(s: float) -> float:
        q = fixed_point(s, sigma_b2, activation, negative_slope=negative_slope, mu=mu)
        return (chi1(q, s, activation, negative_slope, mu) if q is not None else math.inf) - 1.0

    for _ in range(80):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if excess(mid) < 0 else (low, mid)
    return 0.5 * (low + high)


@functools.lru_cache(maxsize=1)
def _pair_nodes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z1, z2, weight) of the product rule over the plane: both half lines of each axis."""
    z, w = _nodes(PAIR_POINTS)
    zs, ws = np.concatenate([-z[::-1], z]), np.concatenate([w[::-1], w])
    return zs[:, None], zs[None, :], ws[:, None] * ws[None, :]


def _pair_mean(f: Callable, g: Callable, q: float, c: float, mu: float = 0.0) -> float:
    """E[f(u1) g(u2)] for (u1, u2) Gaussian with means mu, variances q and correlation c. Shifted: u1 on
    gaussian_mean's nodes, u2 given u1 (mean mu + c (u1 - mu), variance q (1 - c^2)) on its own, so both
    integrals split at the kinks (0)."""
    s, c = math.sqrt(max(q, 0.0)), min(max(c, -1.0), 1.0)
    if mu == 0.0:
        z1, z2, w = _pair_nodes()
        u1, u2 = s * z1, s * (c * z1 + math.sqrt(max(1.0 - c * c, 0.0)) * z2)
        return float(np.sum(w * f(u1) * g(u2)))
    rest = q * max(1.0 - c * c, 0.0)
    u1, w1 = _shifted_nodes(q, np.array([mu]), 2 * PAIR_POINTS)
    inner = _shifted_means(g, rest, mu + c * (u1[0] - mu), 2 * PAIR_POINTS)  # E[g(u2) | u1] at each node
    return float(np.sum(w1[0] * f(u1[0]) * inner))


def correlation_map(c: float, q_star: float, sigma_w2: float, sigma_b2: float, activation: str,
                    negative_slope: float = 0.01, mu: float = 0.0) -> float:
    """The correlation of two inputs' pre-activations one layer on, at the fixed length q*:
    (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q* (Poole et al. 2016, eq. 5; u1, u2 with mean mu).
    ReLU, mu = 0, in closed form (the arc-cosine kernel: E[relu(u1) relu(u2)] = q (sqrt(1 - c^2) +
    (pi - arccos c) c) / (2 pi))."""
    if activation == "relu" and mu == 0.0:
        c = min(max(c, -1.0), 1.0)
        both = q_star * (math.sqrt(1.0 - c * c) + (math.pi - math.acos(c)) * c) / (2.0 * math.pi)
    else:
        phi, _ = _phi(activation, negative_slope)
        both = _pair_mean(phi, phi, q_star, c, mu)
    return (sigma_w2 * both + sigma_b2) / q_star


def chi_c(c: float, q_star: float, sigma_w2: float, activation: str, negative_slope: float = 0.01,
          mu: float = 0.0) -> float:
    """The slope of the correlation map at c: sigma_w^2 E[phi'(u1) phi'(u2)] (Schoenholz et al. 2017,
    eq. 6); at c = 1 it is chi_1."""
    if activation == "relu" and mu == 0.0:
        return sigma_w2 * (math.pi - math.acos(min(max(c, -1.0), 1.0))) / (2.0 * math.pi)
    _, dphi = _phi(activation, negative_slope)
    return sigma_w2 * _pair_mean(dphi, dphi, q_star, c, mu)


def correlation_fixed_point(q_star: float, sigma_w2: float, sigma_b2: float, activation: str,
                            negative_slope: float = 0.01, mu: float = 0.0) -> float:
    """c*: 1 in the ordered phase (chi_1 <= 1, where c = 1 attracts); in the chaotic phase the
    stable fixed point below 1, found by bisection of c_map(c) - c (positive at 0, negative just
    below 1). Within 1e-3 of 1 it is taken as 1."""
    if chi1(q_star, sigma_w2, activation, negative_slope, mu) <= 1.0:
        return 1.0
    gap = lambda c: correlation_map(c, q_star, sigma_w2, sigma_b2, activation, negative_slope, mu) - c  # noqa: E731
    low, high = 0.0, 1.0 - 1e-3
    if gap(low) < 0:  # an activation whose map pulls even uncorrelated inputs apart: search from -1
        low = -1.0
    if gap(high) >= 0:
        return 1.0
    for _ in range(50):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if gap(mid) > 0 else (low, mid)
    return 0.5 * (low + high)


def correlation_depth_scale(sigma_w2: float, sigma_b2: float, activation: str, q0: float = 1.0,
                            negative_slope: float = 0.01, mu: float = 0.0) -> Optional[float]:
    """xi_c = -1 / ln chi_c(c*): the depth over which information about how two inputs differ
    survives; a net trains only up to about 6 xi_c layers (Schoenholz et al. 2017, Fig. 1 and 5).
    Finite on both sides of the edge of chaos, infinite (None) on it; None when q* does not exist."""
    q_star = fixed_point(sigma_w2, sigma_b2, activation, q0, negative_slope, mu=mu)
    if q_star is None or q_star <= 0:
        return None
    c_star = correlation_fixed_point(q_star, sigma_w2, sigma_b2, activation, negative_slope, mu)
    return attracting_scale(chi_c(c_star, q_star, sigma_w2, activation, negative_slope, mu))


def attracting_scale(chi: float) -> Optional[float]:
    """xi = -1 / ln chi for a chi_c <= 1 (attracting): 0 for chi <= 0, None (infinite) at 1."""
    if chi <= 0:
        return 0.0
    return None if chi >= 1.0 - 1e-9 else -1.0 / math.log(chi)


def predicted_preact_q(q0: float, sigma_w2: list[float], sigma_b2: list[float], activations: list[str],
                       negative_slope: float = 0.01, mu_b: Optional[list[float]] = None) -> list[float]:
    """q^l, the variance of every layer's pre-activations (the first from the input's q0; then through the
    previous layer's activation, whose input has mean mu_b of that layer); sqrt(q^l) is the predicted
    pre-activation std. `sigma_b2`: the biases' variances, `mu_b` their means (zeros when not given)."""
    mu_b = mu_b or [0.0] * len(sigma_w2)
    qs = [sigma_w2[0] * q0 + sigma_b2[0]]
    for l in range(1, len(sigma_w2)):
        qs.append(length_map(qs[-1], sigma_w2[l], sigma_b2[l], activations[l - 1], negative_slope, mu_b[l - 1]))
    return qs
