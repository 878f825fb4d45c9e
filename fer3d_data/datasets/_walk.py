"""Tree walking shared by the dataset walkers: find a dataset's files under a root in
either layout (per-subject folders or one flat folder) and group them by scan."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import Fer3dDataError


def group_files(root: str | os.PathLike, parse: Callable[[str], tuple[str, str, dict] | None],
                dataset: str) -> dict[str, tuple[dict, dict[str, Path]]]:
    """scan_id -> (fields parsed from the name, role -> path) for every file under ``root``.

    ``parse(file_name)`` returns (scan_id, role, fields) or None for an unrelated file.
    The same role found twice for one scan is an error: the tree is ambiguous.
    """
    root = Path(root)
    if not root.is_dir():
        raise Fer3dDataError(f"{dataset}: {root} is not a directory")
    scans: dict[str, tuple[dict, dict[str, Path]]] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            parsed = parse(name)
            if parsed is None:
                continue
            scan_id, role, fields = parsed
            _, roles = scans.setdefault(scan_id, (fields, {}))
            path = Path(folder) / name
            if role in roles:
                raise Fer3dDataError(f"{dataset}: {name} found twice: {roles[role]} and {path}")
            roles[role] = path
    if not scans:
        raise Fer3dDataError(f"{dataset}: no scans found under {root}")
    return scans


def missing_roles(roles: dict, expected: tuple[str, ...]) -> tuple[str, ...]:
    """The expected roles without a file, in the order of ``expected``."""
    return tuple(role for role in expected if role not in roles)
