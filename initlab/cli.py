"""The `initlab` command: a thin Hydra entry point around `initlab.train.runner.run`."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from initlab.config.check import ConfigError
from initlab.config.hydra_errors import one_line
from initlab.sweep import job_names  # noqa: F401  (registers the initlab_job resolver that names job folders)

log = logging.getLogger("initlab")


def conf_dir() -> str:
    """initlab's configs: `initlab/conf` in an installed wheel (the build maps the checkout's conf/
    there), else conf/ beside the package in a checkout (an editable install). An absolute path,
    since Hydra resolves a relative one against the module name when started as a console script."""
    package = Path(__file__).resolve().parent
    for place in (package / "conf", package.parent / "conf"):
        if (place / "config.yaml").is_file():
            return str(place)
    raise SystemExit(f"initlab: no configs (conf/config.yaml) in {package} or beside it: the installation is incomplete")


CONF = conf_dir()


def train_job(cfg: DictConfig) -> float:
    """Run one job; return its final test loss (the objective an Optuna sweep minimizes).

    The vectorized launcher recognizes this task (and only this one) as stackable: any other
    task function it is given runs exactly as Hydra's basic launcher would run it.
    """
    # Imported here, not at the top: a wrong option or key (Hydra stops before any job) and --help
    # answer without waiting a second for torch to import.
    from initlab.build.data import DataError
    from initlab.train.runner import RecordsNotWritten, objective, run

    try:
        result = run(cfg)
    except (ConfigError, DataError) as e:
        # One readable line and exit 2, before anything trains (Hydra would print a traceback).
        print(f"initlab: {e}", file=sys.stderr)
        sys.exit(2)
    except RecordsNotWritten as e:  # a full disk: one line; a sweep goes on (the job stays unfinished)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            print(f"initlab: {e}", file=sys.stderr)
            sys.exit(1)
        log.error(str(e))
        return math.inf
    except Exception:
        # run() has recorded the failure (summary.json, error.txt) and logged it. A single run
        # fails loudly; in a sweep the next job goes on and the sweep exits 1 at the end.
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        return math.inf
    return objective(result)


_hydra_main = hydra.main(version_base="1.3", config_path=CONF, config_name="config")(train_job)


def main() -> None:
    """`initlab`: Hydra's main for train_job, its composition errors (a wrong option or key) one line each."""
    with one_line():
        _hydra_main()


def report_main(argv: list[str] | None = None) -> int:
    """`initlab-report`: see initlab.report.page.main (the console script calls it directly, so a
    report does not wait for torch and Hydra to import)."""
    from initlab.report.page import main as report

    return report(argv)
