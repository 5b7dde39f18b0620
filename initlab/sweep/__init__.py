"""sweep: launchers, job configs and folders, workers, the cluster, Hydra callbacks."""
