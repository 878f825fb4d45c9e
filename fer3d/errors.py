"""Every error fer3d raises on purpose, under one root.

Stage: all of fer3d (torch-free). :class:`Fer3dError` is fer3d's root; it shares
:class:`fer3d_data.errors.UserError` with fer3d_data's errors, so every command prints
either as one line (exit 2) while a bug keeps its traceback. Each message names the file
or setting at fault and what to do.
"""

from __future__ import annotations

from fer3d_data.errors import UserError


class Fer3dError(UserError):
    """Base class of every error fer3d raises on purpose."""


class ConfigError(Fer3dError, ValueError):
    """Settings that cannot run; one message lists every bad key."""


class PlanError(Fer3dError, ValueError):
    """The shards cannot give the plan asked for (too few subjects, unknown preset, ...)."""


class RunExistsError(Fer3dError, FileExistsError):
    """--out names a run directory and nothing says to attach to it."""


class RunError(Fer3dError):
    """A run directory is missing a file or holds one that cannot be read."""


class CheckpointError(Fer3dError, ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


class DivergedError(Fer3dError, RuntimeError):
    """The loss became NaN/inf; names the cells so they can be resumed or rerun."""


class ReproduceError(Fer3dError):
    """Some campaigns or figures of a target could not be made (each one is named)."""


class PairingError(Fer3dError, ValueError):
    """Two runs asked to be compared pairwise do not share one plan (subjects, folds)."""
