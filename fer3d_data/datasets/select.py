"""Protocol subsets of walked records: by subject, expression and intensity; and the
records, selection and label names of one prep run (:func:`walk_and_select`).

Stage: dataset discovery. A requested subject or intensity that no scan has is an error
naming it (a typo must not shrink the selection silently); expressions are checked against
the closed list of class names. The record of a folder that could not be walked is kept
unless its subject is known and not requested: its error row must not vanish.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

from ..errors import Fer3dDataError, SelectionError
from ..schema import CLASS_NAMES, INTENSITY_UNGRADED
from .records import ScanRecord


def select(records: Iterable[ScanRecord], subjects: Iterable[str] | None = None,
           expressions: Iterable[str | None] | None = None,
           intensities: Iterable[int] | None = None) -> list[ScanRecord]:
    """The records matching every given filter, in their input order; None = no filter.

    Raises SelectionError for an unknown expression name, or a subject or intensity that
    no record has (with the closest subject id when one is near).

    Example:
        >>> select(records, expressions=CLASS_NAMES[:6], intensities=(3, 4))  # doctest: +SKIP
    """
    records = list(records)
    subjects = None if subjects is None else set(subjects)
    expressions = None if expressions is None else set(expressions)
    intensities = None if intensities is None else set(intensities)
    unknown = (expressions or set()) - set(CLASS_NAMES) - {None}
    if unknown:
        raise SelectionError(f"unknown expression names {sorted(unknown)}; known: {CLASS_NAMES}")
    unwalked = sum(not r.labels_known for r in records)
    hint = f"; {unwalked} folders could not be walked" if unwalked else ""
    _check_requested("subject", subjects, {r.subject for r in records if r.subject}, hint)
    _check_requested("intensity", intensities,
                     {r.intensity for r in records if r.labels_known}, hint)
    return [r for r in records
            if (subjects is None or r.subject in subjects or not r.subject)
            and (not r.labels_known
                 or ((expressions is None or r.expression in expressions)
                     and (intensities is None or r.intensity in intensities)))]


def _check_requested(what: str, requested: set | None, present: set, hint: str) -> None:
    """SelectionError naming each requested value that no record has."""
    absent = sorted(requested - present, key=str) if requested else []
    if not absent:
        return
    problems = []
    for value in absent:
        close = difflib.get_close_matches(str(value), sorted(map(str, present)), n=1)
        problems.append(f"{value!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    found = sorted(present, key=str)
    shown = ", ".join("ungraded" if v == INTENSITY_UNGRADED else str(v) for v in found[:8])
    more = f", ... ({len(found)} in all)" if len(found) > 8 else ""
    raise SelectionError(f"no scan has {what} {', '.join(problems)}; present: {shown}{more}{hint}")


def unlabelled(record: ScanRecord) -> bool:
    """A scan whose files were walked but that carries no label to train on."""
    return record.labels_known and record.label is None


def walk_and_select(name: str, raw: str | os.PathLike, selection: dict, walk: dict | None = None,
                    part: tuple[int, int] | None = None) -> tuple[list, list, tuple[str, ...]]:
    """(every record, the selected ones, the run's label names) of dataset ``name`` under
    ``raw``: ``walk`` are its adapter's inputs, ``selection`` the :func:`select` filters,
    ``part`` (i, n) keeps every n-th selected scan from the i-th (by scan id). The label
    names come from every walked record, so the parts of one collection agree on them.
    A scan that carries no label (:func:`unlabelled`: a Bosphorus action-unit, pose or
    occlusion capture) is never selected; the command says how many were left out."""
    from . import adapter

    a = adapter(name)
    try:
        records = a.walk(raw, **(walk or {}))
    except Fer3dDataError as e:
        raise Fer3dDataError(f"{e} (expected {a.title} files such as {a.example})") from None
    chosen = [r for r in select(records, **{k: v for k, v in selection.items() if v is not None})
              if not unlabelled(r)]
    if not chosen:
        given = ", ".join(f"{k}={v}" for k, v in selection.items() if v is not None) or "none"
        raise Fer3dDataError(f"no scan of the {len(records)} under {raw} matches the selection "
                             f"({given})")
    if part is not None:
        chosen = sorted(chosen, key=lambda r: r.scan_id)[part[0]::part[1]]
    return records, chosen, a.labels(records)
