"""The `logger` group: which loggers exist, the settings each takes, and the check of a config's node."""

from __future__ import annotations

from initlab.config.errors import ConfigError

# logger name -> (the class its _target_ must name, its settings)
KNOWN = {
    "tensorboard": ("initlab.loggers.tensorboard.TensorBoard", ("log_dir",)),
    "mlflow": ("initlab.loggers.mlflow.MLflow", ("tracking_uri", "experiment_name", "max_points")),
}


def check(node) -> None:
    """Raise a one-line ConfigError unless `node` (the config's `logger`) names known loggers and settings."""
    if node is None:
        return
    if not isinstance(node, dict):
        raise ConfigError(f"logger={node!r}: choose loggers with logger=none, tensorboard, mlflow or [tensorboard,mlflow]")
    for name, settings in node.items():
        if name not in KNOWN:
            raise ConfigError(f"logger.{name}: not a logger (allowed: {', '.join(KNOWN)})")
        target, keys = KNOWN[name]
        if not isinstance(settings, dict) or settings.get("_target_") != target:
            raise ConfigError(f"logger.{name}._target_: must be {target}")
        for key, value in settings.items():
            if key != "_target_" and key not in keys:
                raise ConfigError(f"logger.{name}.{key}: not a setting of {target} (allowed: {', '.join(keys)})")
            if key == "max_points":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
                    raise ConfigError(f"logger.{name}.max_points={value!r}: must be an integer >= 2 or null (every point)")
            elif key != "_target_" and value is not None and not isinstance(value, str):
                raise ConfigError(f"logger.{name}.{key}={value!r}: must be text or null")
