"""Hydra callbacks that initlab ships. Enable one in config, e.g. `+hydra/callbacks=report`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("initlab")


class ReportCallback(Callback):
    """Write the initlab report of a multirun into `<sweep dir>/report` when the last job ends."""

    def __init__(self, out: Optional[str] = None) -> None:
        self.out = out

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from initlab.report_page import write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            write_report([sweep_dir], self.out or sweep_dir / "report")
        except Exception as e:  # the runs are done and on disk: a report problem must not hide that
            log.error(f"report failed ({type(e).__name__}: {e}); retry with: initlab-report {sweep_dir}")
