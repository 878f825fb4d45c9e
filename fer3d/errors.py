"""Every error fer3d raises on purpose, under one root.

Stage: all of fer3d (torch-free). :class:`Fer3dError` is fer3d's root; it shares
:class:`fer3d_data.errors.UserError` with fer3d_data's errors, so every command prints
either as one line (exit 2) while a bug keeps its traceback. Each message names the file
or setting at fault and what to do (:func:`unknown_names` offers the closest known names).
"""

from __future__ import annotations

import difflib

from fer3d_data.errors import UserError


class Fer3dError(UserError):
    """Base class of every error fer3d raises on purpose."""


class ConfigError(Fer3dError, ValueError):
    """Settings that cannot run; one message lists every bad key."""


class PlanError(Fer3dError, ValueError):
    """The shards cannot give the plan asked for (too few subjects, unknown preset, ...)."""


class RunError(Fer3dError):
    """A run directory is missing a file or holds one that cannot be read."""


class ShardReadError(Fer3dError):
    """A shard's sample that HDF5 cannot read (a damaged chunk); names the shard, the sample
    and the check to run."""

    def __init__(self, message: str):
        # Raised in a DataLoader worker, it comes back as "Caught ShardReadError in ...
        # Original Traceback ...": its last line holds the message.
        line = message.rstrip().splitlines()[-1] if message.strip() else message
        super().__init__(line.split(f"{type(self).__name__}: ", 1)[-1])


class CheckpointError(Fer3dError, ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


class DivergedError(Fer3dError, RuntimeError):
    """The loss became NaN/inf; names the cells so they can be resumed or rerun."""


class CellsFailedError(Fer3dError, RuntimeError):
    """Some cells of a campaign failed (each named with its reason); the others went on."""


class ReproduceError(Fer3dError):
    """Some campaigns or figures of a target could not be made (each one is named)."""


def unknown_names(names, known, limit: int = 10) -> str:
    """``names`` (none of them in ``known``) for a message, each with "(did you mean 'x'?)"
    when a known name is close; the first ``limit``, then how many more."""
    known = [str(k) for k in known]
    shown = []
    for name in list(names)[:limit]:
        near = difflib.get_close_matches(str(name), known, n=1)
        shown.append(f"{str(name)!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    more = len(names) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


class PairingError(Fer3dError, ValueError):
    """Two runs asked to be compared pairwise do not share one plan (subjects, folds)."""
