"""The config stage: the schema a composed config must pass, its one-line errors, Hydra's errors as one line."""
