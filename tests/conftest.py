"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def refuse_listing(monkeypatch):
    """``refuse_listing(folder)``: os.scandir raises PermissionError for ``folder`` as it
    does for a mode-000 folder when not root (tests often run as root, who may list any
    folder)."""
    real = os.scandir

    def refuse(folder: Path) -> None:
        def scandir(path="."):
            if Path(path) == folder:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)
        monkeypatch.setattr(os, "scandir", scandir)
    return refuse


def pytest_collection_modifyitems(config, items):
    """The long fuzz suites (marker ``fuzz``) run only when asked for: ``-m fuzz``."""
    if "fuzz" in (config.getoption("markexpr") or ""):
        return
    long = [item for item in items if item.get_closest_marker("fuzz")]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if not item.get_closest_marker("fuzz")]
