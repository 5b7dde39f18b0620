"""The README is a page for a new user and the manual lives in docs/: every link and image in
them resolves, the mkdocs site builds without a warning, and the architecture page names every module."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken


def test_the_readme_is_a_page_not_the_manual():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    # the two commands come first, as a new user types them
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block == ["python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/initlab",
                     '.venv/bin/pytest -m "slow or not slow"']
    # counts that change with every commit belong nowhere
    assert not re.search(r"\b\d+ tests\b", text)


def test_the_docs_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is a dev dependency: pip install -e '.[dev]'"
    done = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_module_is_on_the_architecture_page():
    page = (REPO / "docs" / "architecture.md").read_text()
    modules = [p.relative_to(REPO).as_posix() for p in (REPO / "initlab").rglob("*.py")
               if p.name != "__init__.py" or p.parent.name in ("initlab", "loggers")]
    assert [m for m in modules if f"`{m}`" not in page] == []
