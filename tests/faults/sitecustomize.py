"""Fault injection for tests that start initlab as a subprocess (PYTHONPATH=tests/faults).

INITLAB_FAULT=enospc:K makes the K-th write of a run's records (a parquet table or summary.json),
and every later one, fail as a full disk does: half a file lands, then OSError(ENOSPC).
Without INITLAB_FAULT nothing is changed.
"""

import os

_spec = os.environ.get("INITLAB_FAULT", "")
if _spec.startswith("enospc:"):
    import errno
    import pathlib

    import pandas as pd

    _first = int(_spec.split(":")[1])
    _count = [0]

    def _full_disk(path, data: bytes) -> None:
        _count[0] += 1
        if _count[0] >= _first:
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    _to_parquet, _write_text = pd.DataFrame.to_parquet, pathlib.Path.write_text

    def to_parquet(self, path, *args, **kwargs):
        _full_disk(path, b"PAR1" + bytes(200))
        return _to_parquet(self, path, *args, **kwargs)

    def write_text(self, data, *args, **kwargs):
        if self.name.startswith(".summary.json.tmp"):
            _full_disk(self, data.encode())
        return _write_text(self, data, *args, **kwargs)

    pd.DataFrame.to_parquet, pathlib.Path.write_text = to_parquet, write_text
