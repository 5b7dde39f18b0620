"""The package's shape, as docs/architecture.md states it: stages in folders, imports that only run
from a later stage to an earlier one (so no cycle), and analysis that imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "initlab"

# The stages in the order of their imports: a module may import its own stage or an earlier one.
# The mean-field maps and the analysis (store, diagnosis, loggers) come before build and train
# because a run checks, writes, diagnoses and logs its records with them; they never need torch.
STAGES = ["cores", "activations", "theory", "config", "store", "diagnosis", "loggers", "build", "train", "stacked", "report",
          "sweep", "cli", "__main__"]
ANALYSIS = ["activations", "store", "theory", "diagnosis", "loggers", "report"]
TOP_LEVEL = {"__init__", "cores", "activations", "theory", "cli", "__main__"}  # the only modules outside a stage folder


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(("initlab",) + parts).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """The initlab modules a file imports, at its top or inside functions (TYPE_CHECKING aside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("initlab"):
            for alias in node.names:  # `from initlab.x import y` imports initlab.x.y when that is a module
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("initlab"))
    return {m for m in found if m in MODULES and m != "initlab"}


GRAPH = {module: _imports(path) for module, path in MODULES.items()}


def test_every_module_lives_in_a_stage_folder_or_is_a_named_top_level_one():
    loose = {m for m in MODULES if m.count(".") == 1 and m.split(".")[1] not in TOP_LEVEL
             and not (PACKAGE / m.split(".")[1]).is_dir()}
    assert not loose
    assert {_stage(m) for m in MODULES} - {"__init__"} <= set(STAGES)


def test_imports_run_from_a_later_stage_to_an_earlier_one():
    backward = [f"{m} -> {d}" for m, deps in GRAPH.items() if _stage(m) != "__init__"
                for d in deps if STAGES.index(_stage(d)) > STAGES.index(_stage(m))]
    assert not backward


def test_no_import_cycle():
    state: dict[str, int] = {}
    cycles = []

    def visit(module, stack):
        state[module] = 1
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles


def test_no_private_name_is_imported_across_modules():
    private = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("initlab"):
                private += [f"{module}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private


@pytest.mark.parametrize("stage", ANALYSIS)
def test_analysis_imports_no_torch(stage):
    modules = [m for m in MODULES if _stage(m) == stage]
    probe = f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
