"""Tree walking shared by the dataset walkers: find a dataset's files under a root in
either layout (per-subject folders or one flat folder) and group them by scan.

Nothing is skipped silently: a folder that cannot be listed, a symbolic link to a folder
(not followed), or a mesh file whose name the dataset's pattern does not recognise (a typo
such as ``F0001_AN05WH_F3D.wrl``) becomes a problem record; a scan file that cannot be
read (broken link, no permission, not a regular file) becomes its scan's ``problem``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from ..errors import Fer3dDataError
from ..schema import INTENSITY_UNGRADED
from .records import ScanRecord


def group_files(root: str | os.PathLike, parse: Callable[[str], tuple[str, str, dict] | None],
                dataset: str, mesh_suffix: str | None = None
                ) -> tuple[dict[str, tuple[dict, dict[str, Path], list[str]]],
                           list[tuple[Path, str]]]:
    """Every scan file under ``root``, and the paths that could not be walked.

    Returns (scan_id -> (fields parsed from the name, role -> path, problems of its
    files), [(folder or file, problem)]). ``parse(file_name)`` returns (scan_id, role,
    fields) or None for an unrelated file; a file ending in ``mesh_suffix`` (any case) that
    ``parse`` does not recognise is reported, not ignored. The same role found twice for one
    scan is an error: the tree is ambiguous.
    """
    root = Path(root)
    if not root.is_dir():
        raise Fer3dDataError(f"{dataset}: {root} is not a directory")
    unwalked: list[tuple[Path, str]] = []
    scans: dict[str, tuple[dict, dict[str, Path], list[str]]] = {}

    def unlisted(e: OSError) -> None:
        unwalked.append((Path(e.filename), f"cannot list folder ({e.strerror or e})"))

    for folder, dirs, files in os.walk(root, onerror=unlisted):
        dirs.sort()
        for name in [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            unwalked.append((Path(folder) / name, "symbolic link to a folder, not followed "
                                                  "(link the dataset root instead)"))
        for name in sorted(files):
            parsed = parse(name)
            if parsed is None:
                if mesh_suffix and name.lower().endswith(mesh_suffix):
                    unwalked.append((Path(folder) / name, f"a {mesh_suffix} file whose name is "
                                     f"not a {dataset} scan name (a typo?): rename it to the "
                                     "dataset's pattern (docs/formats.md) or move it out"))
                continue
            scan_id, role, fields = parsed
            _, roles, problems = scans.setdefault(scan_id, (fields, {}, []))
            path = Path(folder) / name
            if role in roles:
                raise Fer3dDataError(f"{dataset}: {name} found twice: {roles[role]} and {path}")
            roles[role] = path
            problem = unreadable(path)
            if problem:
                problems.append(f"{path}: {problem}")
    if unwalked and unwalked[0][0] == root:
        raise Fer3dDataError(f"{dataset}: {unwalked[0][1]}: {root}")
    if not scans:
        extra = "; ".join(f"{p}: {m}" for p, m in unwalked)
        raise Fer3dDataError(f"{dataset}: no scans found under {root}"
                             + (f" ({extra})" if extra else ""))
    return scans, unwalked


def unreadable(path: Path) -> str | None:
    """Why a scan file cannot be read (broken link, not a regular file, no permission)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        return ("broken symbolic link" if os.path.islink(path)
                else f"cannot stat ({e.strerror or e})")
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def missing_roles(roles: dict, expected: tuple[str, ...]) -> tuple[str, ...]:
    """The expected roles without a file, in the order of ``expected``."""
    return tuple(role for role in expected if role not in roles)


def folder_records(dataset: str, root: str | os.PathLike, unwalked: list[tuple[Path, str]],
                   subject_pattern: str) -> list[ScanRecord]:
    """One problem record per folder that could not be walked (or unrecognised mesh file).

    scan_id is the path relative to the root; the subject is its name when it is a subject
    id (``subject_pattern``), else "" (unknown); ``capture`` "" marks the labels as unknown,
    and ``mesh`` holds the path so the error row names it.
    """
    records = []
    for folder, problem in unwalked:
        relative = folder.relative_to(root).as_posix()
        subject = folder.name if re.fullmatch(subject_pattern, folder.name) else ""
        records.append(ScanRecord(dataset=dataset, scan_id=relative, subject=subject,
                                  expression=None, intensity=INTENSITY_UNGRADED, capture="",
                                  mesh=folder, texture=None, landmarks=None, root=Path(root),
                                  problem=f"{folder}: {problem}"))
    return records


def scan_problem(problems: list[str]) -> str | None:
    """The ``problem`` of a scan whose files could not all be read, or None."""
    return "; ".join(problems) if problems else None
