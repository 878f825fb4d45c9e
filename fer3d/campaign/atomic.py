"""Atomic files of a run directory that several processes share.

Stage: campaign bookkeeping (torch-free). Every file is written to a temporary name unique
to this host and process, then renamed: readers never see a torn file, two processes never
write the same temporary file, and a full disk leaves no temporary file behind and names
the path it could not write. Reading is :mod:`fer3d.campaign.rundir`'s job.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path


def tmp_name(path: str | os.PathLike) -> str:
    """``<path>.<host>.<pid>.tmp``: unique among the processes sharing a run directory."""
    return f"{os.fspath(path)}.{socket.gethostname()}.{os.getpid()}.tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(tmp)`` then rename to ``path``; on any failure the temporary file goes.

    A full disk surfaces as ``OSError(ENOSPC)`` whose ``filename`` is ``path``, and so does
    any system error about the temporary file (a read-only run directory): the message
    names the file the user knows.
    """
    tmp = tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path)) from exc
        if isinstance(exc, OSError) and exc.errno and exc.filename == tmp:
            raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc
        raise


def write_json(obj, path: str | os.PathLike) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1)
    atomic_write(path, write)


def publish_once(path: Path, obj) -> bool:
    """Create ``path`` holding ``obj`` unless it exists (atomic, first writer wins).

    The content is complete before the name appears (``os.link`` of a finished temporary
    file fails if ``path`` exists), so a second process reads either nothing or all of it.
    A system error names ``path``, as in :func:`atomic_write`.
    """
    tmp = tmp_name(path)
    try:
        write_json(obj, tmp)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno and exc.filename in (tmp, os.fspath(path)):
            raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):  # gone when write_json failed
            os.unlink(tmp)
