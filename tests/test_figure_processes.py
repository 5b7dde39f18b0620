"""A report's figures drawn by forked processes (initlab/report/figures/processes.py): each job's result in
the jobs' order, as drawn here; a worker that dies leaves its job to this process; a job's error
reaches the caller."""

from __future__ import annotations

import os

import pytest

from initlab.report.figures import processes as figure_processes
pytestmark = pytest.mark.skipif(not figure_processes.can_fork(), reason="figures are drawn in processes only on Linux")


def test_results_in_the_jobs_order_each_from_a_worker():
    here = os.getpid()
    results = figure_processes.draw([lambda i=i: (i, os.getpid()) for i in range(5)], workers=2)
    assert [i for i, _ in results] == list(range(5))
    pids = {pid for _, pid in results}
    assert here not in pids and 1 <= len(pids) <= 2


def test_one_worker_draws_here():
    here = os.getpid()
    assert figure_processes.draw([lambda: os.getpid()] * 3, workers=1) == [here] * 3


def test_a_job_whose_worker_dies_is_drawn_here():
    here = os.getpid()

    def dies_in_a_worker():
        if os.getpid() != here:
            os._exit(3)  # as the kernel's out-of-memory killer would end it
        return "drawn here"

    results = figure_processes.draw([lambda: "a", dies_in_a_worker, lambda: "c"], workers=2)
    assert results == ["a", "drawn here", "c"]  # (the others, where the broken pool lost them, drawn here too)


def test_a_jobs_error_reaches_the_caller():
    def fails():
        raise ValueError("no such column")

    with pytest.raises(ValueError, match="no such column"):
        figure_processes.draw([lambda: 1, fails], workers=2)
