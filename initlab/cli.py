"""The `initlab` command: a thin Hydra entry point around `initlab.train.run`."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from initlab.config import ConfigError
from initlab.data import DataError
from initlab.train import run


# conf/ sits beside the package in the checkout (installed editable). An absolute path, since
# Hydra resolves a relative one against the module name when started as a console script.
CONF = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (ConfigError, DataError) as e:
        # One readable line and exit 2, before anything trains (Hydra would print a traceback).
        print(f"initlab: {e}", file=sys.stderr)
        sys.exit(2)


def report_main(argv: list[str] | None = None) -> int:
    """`initlab-report PATH [PATH ...] [--out DIR]`: tables, figures and report.md for some sweeps."""
    import argparse

    from initlab.report_page import write_report

    parser = argparse.ArgumentParser(prog="initlab-report", description=report_main.__doc__)
    parser.add_argument("paths", nargs="+", help="a sweep folder, a run folder, or a folder of sweeps")
    parser.add_argument("--out", help="where to write (default: <first PATH>/report)")
    args = parser.parse_args(argv)
    try:
        write_report(args.paths, args.out)
    except FileNotFoundError as e:
        print(f"initlab-report: {e}", file=sys.stderr)
        return 2
    return 0
