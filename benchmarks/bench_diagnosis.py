"""The diagnosis measured on a labelled catalogue (benchmarks/diagnosis_catalogue.yaml).

    python benchmarks/bench_diagnosis.py [--out outputs/catalogue] [--only NAME ...]

Every case is an ordinary initlab run on real MNIST (1-2 epochs). Recall: the failures whose
label is one of the labels they may get. Specificity: the healthy controls left `healthy`.
Floors (issue "A researcher's own study"): recall >= 0.95, specificity 1.0. The table goes to
stdout and to benchmarks/results/diagnosis-catalogue.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import config  # noqa: E402

from initlab.report.tables import markdown_table  # noqa: E402
from initlab.train.runner import run  # noqa: E402

CATALOGUE = Path(__file__).parent / "diagnosis_catalogue.yaml"
RESULTS = Path(__file__).parent / "results" / "diagnosis-catalogue.md"


def cases() -> list[dict]:
    """Every case of the catalogue: name, overrides, the labels it may get, and whether it is a failure."""
    book = yaml.safe_load(CATALOGUE.read_text())
    return ([{**c, "failure": True} for c in book["failures"]]
            + [{**c, "failure": False, "expect": ["healthy"]} for c in book["healthy"]])


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def diagnose_case(case: dict, out: Path) -> dict:
    """Run one case and say what the diagnosis called it."""
    started = time.perf_counter()
    # rerun=true: a folder left by an earlier benchmark run must not answer for this code's diagnosis.
    result = run(config(*case["overrides"], "rerun=true"), output_dir=out / slug(case["name"]))
    label = result.summary["diagnosis"]["label"]
    return {"case": case["name"], "kind": "failure" if case["failure"] else "healthy",
            "expected": " or ".join(case["expect"]), "label": label, "right": label in case["expect"],
            "test_accuracy": result.metrics.get("test_accuracy"), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/catalogue", help="where the runs are written")
    parser.add_argument("--only", nargs="*", help="run only the cases with these names")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    import pandas as pd

    chosen = [c for c in cases() if not args.only or c["name"] in args.only]
    rows = []
    for case in chosen:
        rows.append(diagnose_case(case, Path(args.out)))
        r = rows[-1]
        print(f"{'ok ' if r['right'] else 'MISS'} {r['case']:<55} {r['label']:<18} (expected {r['expected']})", flush=True)
    table = pd.DataFrame(rows)
    failures, healthy = table[table.kind == "failure"], table[table.kind == "healthy"]
    recall = failures.right.mean() if len(failures) else float("nan")
    specificity = healthy.right.mean() if len(healthy) else float("nan")
    lines = [f"recall {recall:.3f} ({int(failures.right.sum())}/{len(failures)} failures named right; floor 0.95)",
             f"specificity {specificity:.3f} ({int(healthy.right.sum())}/{len(healthy)} healthy runs left alone; "
             f"floor 1.0)", f"total {table.seconds.sum():.0f} s"]
    print("\n".join(lines))
    if not args.only:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text("`python benchmarks/bench_diagnosis.py` (2-core CPU, real MNIST)\n\n"
                           + markdown_table(table.drop(columns="right").assign(right=table.right.map({True: "yes", False: "**no**"})), ".4g")
                           + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")


if __name__ == "__main__":
    main()
