"""A Hydra callback for the tests: at each job's end, note whether its records are on disk."""

from pathlib import Path

from hydra.experimental.callback import Callback


class RecordsAtJobEnd(Callback):
    def on_job_end(self, config, job_return, **kwargs) -> None:
        folder = Path(config.hydra.runtime.output_dir)
        (folder / "records_at_job_end.txt").write_text(str((folder / "summary.json").is_file()))
