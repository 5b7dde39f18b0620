"""A run's nested config as flat dotted columns: how tables and loggers name a setting."""

from __future__ import annotations

import json


def flatten(node: dict, prefix: str = "", targets: bool = False) -> dict:
    """A nested config as dotted keys (`lr.value`); `_target_` keys only with targets=True."""
    flat = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + ".", targets))
        elif key != "_target_" or targets:
            # Tidy tables hold no list-valued cells: a list becomes its text.
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat
