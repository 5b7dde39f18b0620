"""Shared test setup: real MNIST from INITLAB_DATA (or ../shared/data), a private data cache,
and a helper that composes the real conf/ exactly as the `initlab` command does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"


def _mnist_root() -> Path:
    for candidate in (os.environ.get("INITLAB_DATA"), REPO.parent / "shared" / "data", REPO / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            # absolute: tests link to the files from, and run the command in, folders of their own
            # (INITLAB_DATA=../shared/data, as the README allows, is relative to where pytest started)
            return Path(candidate).resolve()
    raise RuntimeError("MNIST not found: set INITLAB_DATA to a folder holding MNIST/raw/ "
                       "(the first README command downloads it into data/)")


@pytest.fixture(scope="session", autouse=True)
def _environment(tmp_path_factory):
    # Set before any config is composed: data.root and data.cache_dir read these variables.
    os.environ["INITLAB_DATA"] = str(_mnist_root())
    os.environ["INITLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


def make_config(*overrides: str):
    """The composed config for `initlab <overrides>` (progress bars off for test logs)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=["trainer.progress=false", *overrides])


@pytest.fixture
def config():
    return make_config


@pytest.fixture
def replayed(monkeypatch):
    """CUDA graphs stood in for on the CPU (replayed_graphs.ReplayedEagerly), wherever trainer.cuda_graphs is on."""
    from replayed_graphs import put_in_place

    put_in_place(monkeypatch)


def draw_only(monkeypatch, *names: str) -> None:
    """Reports written in this test draw only the figures named (catalogue.all_figures' keys): for a test
    that reads those alone (every figure is drawn and checked by test_report_files_figures_and_page)."""
    from initlab.report import page

    real = page.catalogue.all_figures
    monkeypatch.setattr(page.catalogue, "all_figures", lambda *a, **k: real(*a, **k, only=names))


# --- the `initlab` command in this process -------------------------------------------------------------


def run_initlab(args: list[str], cwd, env: dict | None = None, timeout: float = 600):
    """`initlab <args>` run from `cwd`, as subprocess.run(..., capture_output=True, text=True) returns it.

    In this process by default: the command's own entry point (initlab.cli.main, Hydra's main) with
    sys.argv, the working folder, stdout and stderr swapped in and everything it touches in this
    process restored after it (Hydra's global state, logging, the environment, the working folder). A
    fresh interpreter spends ~2.5 s importing torch, Hydra and torch._dynamo (which torch's optimizers
    import on first use) before the first line of initlab: most of a small run. What a subprocess proves
    and this does not (start-up, console scripts, imports in a fresh interpreter, PYTHONPATH) is tested
    by the tests that call subprocess.run themselves (test_packaging, test_user_study, test_faults, ...).
    INITLAB_TEST_SUBPROCESS=1 runs every call as a subprocess instead, to check that both agree."""
    import contextlib
    import io
    import logging
    import signal
    import subprocess
    import sys

    if os.environ.get("INITLAB_TEST_SUBPROCESS") == "1":
        return subprocess.run([sys.executable, "-m", "initlab", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    from hydra.core.global_hydra import GlobalHydra

    from initlab import cli

    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_logging = {id(l): (l, list(l.handlers), l.level, l.propagate, l.disabled) for l in _loggers()}
    saved_disable = logging.root.manager.disable
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)}
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        os.environ.update(env or {})
        os.chdir(cwd)
        sys.argv = ["initlab", *map(str, args)]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        GlobalHydra.instance().clear()
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        _restore_logging(saved_logging)
        logging.disable(saved_disable)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
    return subprocess.CompletedProcess(["initlab", *args], code, out.getvalue(), err.getvalue())


def _loggers() -> list:
    import logging

    return [logging.getLogger()] + [l for l in logging.root.manager.loggerDict.values() if isinstance(l, logging.Logger)]


def _restore_logging(saved: dict) -> None:
    """Every logger as it was; the handlers a run's logging config added (streams swapped in, log files in the
    run's folder) closed, on the loggers that were there and on those the run made."""
    for logger in _loggers():
        kept = saved.get(id(logger))
        before = {id(h) for h in kept[1]} if kept else set()
        for handler in list(logger.handlers):
            if id(handler) not in before:
                logger.removeHandler(handler)
                handler.close()
        if kept:
            _, handlers, level, propagate, disabled = kept
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled
