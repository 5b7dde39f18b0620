"""What a finished group's records cost the launcher's process: GroupTraining.fit of 1,024 members of a
tiny model (records of the grid's size: 300 log steps and 3,000 batch losses a run; the arithmetic is
small so the host's share shows), then taking each member's records, pickling them (what goes to a
write process) and making 256 members' tables (MemberRecords.outcome, done where the folder is written).

    python benchmarks/bench_group_records.py [--members 1024]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.config.check import validate  # noqa: E402
from initlab.stacked.group import GroupTraining  # noqa: E402

TINY = ("data=synthetic", "data.source.num_train=6000", "data.source.num_test=200", "data.source.in_features=16",
        "model.width=8", "trainer.batch_size=20", "trainer.device=cpu", "trainer.jacobian_inputs=0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1024)
    args = parser.parse_args()
    members = [validate(config(*TINY, f"trainer.seed={k}")) for k in range(args.members)]
    group = GroupTraining(members, torch.device("cpu"))
    started = time.perf_counter()
    group.fit()
    fit = time.perf_counter() - started
    started = time.perf_counter()
    taken = [group.records(k) for k in range(args.members)]
    took = time.perf_counter() - started
    started = time.perf_counter()
    blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in taken]
    pickled = time.perf_counter() - started
    started = time.perf_counter()
    for r in taken[:256]:
        r.outcome()
    tables = (time.perf_counter() - started) / 256
    print(f"{args.members} members: fit {fit:.2f} s (10 epochs x 300 steps); records {took:.2f} s; pickled {pickled:.2f} s "
          f"({sum(map(len, blobs)) / len(blobs) / 1e3:.0f} kB a member); tables {tables * 1e3:.2f} ms a member")


if __name__ == "__main__":
    main()
