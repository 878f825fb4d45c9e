"""Exception types of fer3d_data: one for malformed raw files, one for a scan a
preprocessing step could not handle, one for a selection that names what does not exist."""

from __future__ import annotations

import os


class UserError(Exception):
    """An error the user can act on: every fer3d command prints it as one line (exit 2).

    The common root of :class:`Fer3dDataError` and of ``fer3d.errors.Fer3dError`` (the
    training side), so the shared command-line plumbing needs to know only this class.
    """


class Fer3dDataError(UserError):
    """Base class of every error fer3d_data raises on purpose."""


class RawFormatError(Fer3dDataError, ValueError):
    """A raw file (wrl, bnd, pse, bnt, lm2, lm3, image) is malformed.

    The message always starts with the file's path, then the problem:
    ``"F0001_AN01WH_F3D.wrl: coordIndex refers to vertex 9012 but only 8000 exist"``.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path or '<data>'}: {problem}")


class ScanError(Fer3dDataError):
    """A preprocessing step failed on one scan; becomes a row of ``/errors``."""

    def __init__(self, step: str, message: str, scan_id: str | None = None):
        self.step = step
        self.message = message
        self.scan_id = scan_id
        super().__init__(f"{scan_id + ': ' if scan_id else ''}[{step}] {message}")


class SelectionError(Fer3dDataError, ValueError):
    """A requested subject, expression or intensity that no scan of the dataset has
    (a typo must not shrink a selection silently)."""
