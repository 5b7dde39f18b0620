"""The error every config check raises: one readable line, exit 2 (no heavy imports, so the
report and the loggers can raise it without importing torch)."""


class ConfigError(ValueError):
    """A config value that the schema does not allow; its message is one readable line."""
