"""The repository stands alone: its test settings live in setup.cfg (and pytest reads them
from there), and no file points at documents outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"FORMATS\.md|STYLE\.md|ARCHITECTURE\.md|PAPER_NUMBERS\.md|\.\./shared/")
TEXT = {".py", ".md", ".toml", ".cfg", ".yaml", ".yml", ".sh", ".txt", ""}


def test_pytest_reads_setup_cfg(pytestconfig):
    assert pytestconfig.inipath == ROOT / "setup.cfg"
    assert any(m.startswith("slow:") for m in pytestconfig.getini("markers"))
    assert "--import-mode=importlib" in pytestconfig.getini("addopts")


def _project_files():
    skip = {".git", ".venv", "build", "dist", "demo_out", "__pycache__", ".hypothesis"}
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and not skip & set(rel.parts) and path.suffix in TEXT \
                and not rel.parts[0].endswith(".egg-info"):
            yield path


def test_no_reference_outside_the_repository():
    this = Path(__file__).resolve()
    found = [f"{p.relative_to(ROOT)}:{i}" for p in _project_files() if p.resolve() != this
             for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace")
                                      .splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, found
