"""The labelled diagnosis catalogue (benchmarks/diagnosis_catalogue.yaml) on real MNIST: every
failure gets one of the labels it may get, every healthy control stays `healthy` (pytest -m slow).
benchmarks/bench_diagnosis.py runs the same cases and prints recall and specificity."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_diagnosis import cases, diagnose_case  # noqa: E402

pytestmark = pytest.mark.slow

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_catalogue_case_gets_its_label(case, tmp_path):
    result = diagnose_case(case, tmp_path)
    assert result["right"], f"{case['name']}: labelled {result['label']}, expected {' or '.join(case['expect'])}"


def test_catalogue_is_big_enough_and_balanced():
    failures = [c for c in CASES if c["failure"]]
    assert len(CASES) >= 20 and len(failures) >= 10 and len(CASES) - len(failures) >= 10
    assert all(c["expect"] and "healthy" not in c["expect"] for c in failures)
