"""Opening shard files for writing: which existing file a run resumes, HDF5's file lock,
and system errors that name the file.

Stage: the end of preprocessing (:class:`fer3d_data.shards.ShardWriter`) and merge.
:func:`preflight` decides before any work whether an existing file resumes; a finished shard
is extended in a copy (:func:`copy_finished`), never moved, so it stays whole until its
replacement is complete.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import h5py

from ..errors import Fer3dDataError
from .spec import _attr, _config_dict, _diff, _read_config, check_header, tmp_path


def open_h5(path: Path, mode: str, hint: str = "") -> h5py.File:
    """h5py.File(path, mode), its failures naming the file: a :class:`Fer3dDataError`, or
    an OSError with the path as its filename for a system error (permission, no folder)."""
    try:
        return h5py.File(path, mode)
    except BlockingIOError as e:  # HDF5's file lock: another process has it open for writing
        raise Fer3dDataError(f"{path}: another process is writing this file "
                             f"(HDF5 file lock: {e.strerror or e}); wait for it to finish or "
                             f"stop it first") from None
    except FileNotFoundError:
        if mode in ("r", "r+"):  # found a moment ago
            raise Fer3dDataError(f"{path}: vanished while opening it (another fer3d-prep with "
                                 f"--overwrite on the same output?)") from None
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), str(path)) from None
    except OSError as e:
        if e.errno:  # h5py gives the system's errno but no file name
            raise OSError(e.errno, os.strerror(e.errno), str(path)) from None
        raise Fer3dDataError(f"{path}: cannot be opened as HDF5 ({e}){hint}") from e


def refuse_if_locked(path: Path) -> None:
    """Fer3dDataError when another process writes ``path`` (HDF5's file lock). Checked
    before replacing it: HDF5 truncates a file before it tries the lock."""
    try:
        h5py.File(path, "r").close()
    except BlockingIOError:
        open_h5(path, "r")  # raises the lock message
    except OSError:  # absent, or not HDF5: nothing to protect
        pass


def preflight(path: str | os.PathLike, *, config: Any, landmark_scheme: str,
              label_names: Iterable[str] | None = None, overwrite: bool = False) -> Path | None:
    """The existing file a writer would resume (``<out>.tmp`` first, then ``<out>``), or None.

    Raises :class:`Fer3dDataError` before any work when that file cannot be resumed: not a
    shard, another ``format_version``, a merged file, another config (its run-only keys
    aside), landmark scheme or (unless None) label names.
    With ``overwrite`` nothing is checked and None is returned (the writer starts afresh).
    """
    path = Path(path)
    if overwrite:
        return None
    # Keys a config names as run-only (PrepConfig.RUN_ONLY: the time limit) change no sample.
    run_only = set(getattr(config, "RUN_ONLY", ()))
    config = {k: v for k, v in _config_dict(config).items() if k not in run_only}
    for candidate in (tmp_path(path), path):
        if not candidate.exists():
            continue
        hint = "; pass --overwrite (overwrite=True) to replace it, or choose another output"
        with open_h5(candidate, "r", hint) as f:
            try:
                check_header(f, candidate)
            except Fer3dDataError as e:
                raise Fer3dDataError(f"{e}{hint}") from None
            if "parts" in f.attrs:
                raise Fer3dDataError(f"{candidate}: is a merged (virtual) shard and cannot be "
                                     f"appended to{hint}")
            old = {k: v for k, v in _read_config(f, candidate).items() if k not in run_only}
            scheme = _attr(f["landmarks"].attrs.get("scheme")) if "landmarks" in f else None
            names = tuple(_attr(f.attrs.get("class_names", [])))
        if old != config:
            raise Fer3dDataError(f"{candidate}: was written with another config "
                                 f"({_diff(old, config)}){hint}")
        if scheme != landmark_scheme:
            raise Fer3dDataError(f"{candidate}: landmark scheme {scheme!r}, "
                                 f"expected {landmark_scheme!r}{hint}")
        if label_names is not None and names != tuple(label_names):
            raise Fer3dDataError(f"{candidate}: labels {list(names)}, this run has "
                                 f"{list(label_names)}{hint}")
        return candidate
    return None


def copy_finished(path: Path, tmp: Path) -> None:
    """Copy the finished shard ``path`` to ``tmp`` (created exclusively: never over another
    run's .tmp). ``path`` is never moved or changed: it stays whole for its readers, and if
    the run extending the copy fails, until the copy replaces it."""
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise Fer3dDataError(f"{tmp}: appeared while starting (another fer3d-prep on the "
                             "same output?)") from None
    try:
        with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
            shutil.copyfileobj(src, dst, 16 * 2**20)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno:
            raise OSError(e.errno, os.strerror(e.errno), str(tmp)) from e
        raise
