"""train: the loop of one run, its per-layer probes, the at-init measurements, `run(cfg)`."""
