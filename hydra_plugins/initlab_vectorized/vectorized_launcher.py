"""Hydra's entry to initlab's vectorized launcher. Hydra only instantiates launchers that live
in the hydra_plugins namespace; the logic is in initlab.vectorized."""

from initlab.vectorized import VectorizedLauncher as _VectorizedLauncher


class VectorizedLauncher(_VectorizedLauncher):
    """Train a multirun's compatible jobs together as stacked models (initlab.vectorized)."""
