"""Dataset walkers: a raw BU-3DFE or Bosphorus tree -> sorted :class:`ScanRecord` lists.

Each walker parses file names (FORMATS.md) into subject, expression, intensity and the
paths of a scan's companions, accepting per-subject folders or one flat folder and noting
missing companions instead of failing. :func:`select` keeps a protocol's subset.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..schema import CLASS_NAMES
from .bosphorus import walk_bosphorus
from .bu3dfe import walk_bu3dfe
from .records import ScanRecord

# dataset name (schema.DATASETS) -> walker
walkers = {"bu3dfe": walk_bu3dfe, "bosphorus": walk_bosphorus}


def select(records: Iterable[ScanRecord], subjects: Iterable[str] | None = None,
           expressions: Iterable[str | None] | None = None,
           intensities: Iterable[int] | None = None) -> list[ScanRecord]:
    """The records matching every given filter, in their input order; None = no filter.

    Example:
        >>> select(records, expressions=CLASS_NAMES[:6], intensities=(3, 4))  # doctest: +SKIP
    """
    subjects = None if subjects is None else set(subjects)
    expressions = None if expressions is None else set(expressions)
    intensities = None if intensities is None else set(intensities)
    unknown = (expressions or set()) - set(CLASS_NAMES) - {None}
    if unknown:
        raise ValueError(f"unknown expression names {sorted(unknown)}; known: {CLASS_NAMES}")
    return [r for r in records
            if (subjects is None or r.subject in subjects)
            and (expressions is None or r.expression in expressions)
            and (intensities is None or r.intensity in intensities)]


__all__ = ["ScanRecord", "select", "walk_bosphorus", "walk_bu3dfe", "walkers"]
