"""Stage 1, config: the schema a composed config must pass, its one-line errors, Hydra's errors as one line."""
