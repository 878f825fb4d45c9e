"""Which frames of each capture sequence a run keeps: ``all``, ``apex``, ``every:N``, ``last:K``.

Stage: dataset discovery (after walking, before selection). Scans outside a sequence are
always kept; a sequence's frames are ordered by frame number and chosen together, so a
sequence is never split by this step. ``apex`` is the middle frame: 4D captures such as
BU-4DFE go neutral -> apex -> neutral; for captures that end at the apex (CK+ style) use
``last:1``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from .records import ScanRecord

FRAME_MODES = ("all", "apex", "every:N", "last:K")


def parse_frames(text: str) -> tuple[str, int]:
    """"all" -> ("all", 1), "apex" -> ("apex", 1), "every:3" -> ("every", 3), "last:2" ->
    ("last", 2); ValueError naming the accepted forms."""
    mode, _, number = str(text).strip().lower().partition(":")
    if mode in ("all", "apex") and not number:
        return mode, 1
    if mode in ("every", "last") and number.isdigit() and int(number) >= 1:
        return mode, int(number)
    raise ValueError(f"frames must be one of {', '.join(FRAME_MODES)} (N, K >= 1)")


def check_frames(text: str) -> str:
    """``text`` when :func:`parse_frames` accepts it (a command-line check)."""
    parse_frames(text)
    return text


def select_frames(records: Iterable[ScanRecord], frames: str = "all") -> list[ScanRecord]:
    """The records kept by ``frames``, in their input order.

    >>> from pathlib import Path
    >>> rec = [ScanRecord("folder", f"s/{k}", "p1", None, -1, "", Path("x"), None, None,
    ...                   label="smile", sequence="s", frame=k) for k in range(7)]
    >>> [r.frame for r in select_frames(rec, "every:3")]
    [0, 3, 6]
    >>> [r.frame for r in select_frames(rec, "apex")]
    [3]
    """
    mode, n = parse_frames(frames)
    records = list(records)
    if mode == "all":
        return records
    sequences = defaultdict(list)
    for r in records:
        if r.sequence:
            sequences[r.sequence].append(r)
    kept = set()
    for members in sequences.values():
        ordered = sorted(members, key=lambda r: r.frame)
        chosen = {"apex": lambda: [ordered[(len(ordered) - 1) // 2]],
                  "every": lambda: ordered[::n], "last": lambda: ordered[-n:]}[mode]()
        kept.update(id(r) for r in chosen)
    return [r for r in records if not r.sequence or id(r) in kept]
