"""The labels file of a labelled folder: one row per scan, CSV or JSON lines, checked whole.

Stage: dataset discovery (the ``folder`` adapter). Columns (docs/datasets.md): ``path``,
``subject``, ``label`` required; ``texture``, ``landmarks``, ``sequence``, ``frame``
optional. Every problem of the file is found before any scan is read and reported one line
each (``labels.csv:12: ...``) in a single :class:`Fer3dDataError`: an unknown column, an
empty required value, a path that leaves the raw folder, a path given twice, a frame that is
no number, a value wider than its index column, a sequence that changes subject or label
or repeats a frame. Missing files are not problems of the file: they become error rows.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import Fer3dDataError, RawFormatError
from ..io._common import read_text_lines
from ..schema import NO_FRAME
from ..shards.spec import STRING_WIDTHS

REQUIRED = ("path", "subject", "label")
COLUMNS = REQUIRED + ("texture", "landmarks", "sequence", "frame")
_PATHS = ("path", "texture", "landmarks")
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class Row:
    """One scan of the labels file; ``line`` is its line number (the header is line 1)."""

    line: int
    path: str
    subject: str
    label: str
    texture: str = ""
    landmarks: str = ""
    sequence: str = ""
    frame: int = NO_FRAME


def read_labels(path: str | os.PathLike) -> list[Row]:
    """Every row of a labels file, or one Fer3dDataError listing each problem on its line."""
    path = Path(path)
    try:
        lines = read_text_lines(path)
    except RawFormatError as e:
        raise Fer3dDataError(str(e)) from None
    json_lines = path.suffix.lower() in _JSON_SUFFIXES
    cells, problems = (_json_cells if json_lines else _csv_cells)(path.name, lines)
    rows = []
    for line, values in cells:
        row, bad = _row(f"{path.name}:{line}", line, values)
        problems += bad
        if row is not None:
            rows.append(row)
    problems += _repeats(path.name, rows)
    if problems:
        raise Fer3dDataError(f"{path}: {len(problems)} problems, no scan was read:\n  "
                             + "\n  ".join(problems))
    if not rows:
        raise Fer3dDataError(f"{path}: no scan rows")
    return rows


def _csv_cells(name: str, lines: list[str]) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line, {column: text}) of each non-empty CSV row, and the header's problems."""
    table = [(i + 1, [c.strip() for c in cells]) for i, cells in enumerate(csv.reader(lines))]
    table = [(i, cells) for i, cells in table if any(cells)]
    if not table:
        return [], [f"{name}: empty file (expected a header: {', '.join(COLUMNS)})"]
    header = [c.lower() for c in table[0][1]]
    problems = _header_problems(name, header)
    if problems:  # the rows cannot be read without their columns
        return [], problems
    out = []
    for line, cells in table[1:]:
        if len(cells) != len(header):
            problems.append(f"{name}:{line}: {len(cells)} cells, the header has {len(header)}")
            continue
        out.append((line, {c: v for c, v in zip(header, cells) if c in COLUMNS}))
    return out, problems


def _json_cells(name: str, lines: list[str]) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line, {column: value}) of each JSON object line, and the problems of the lines."""
    out, problems, unknown = [], [], set()
    for i, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as e:
            problems.append(f"{name}:{i + 1}: not a JSON object ({e})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{name}:{i + 1}: not a JSON object")
            continue
        unknown |= set(obj) - set(COLUMNS)
        out.append((i + 1, {k: v for k, v in obj.items() if k in COLUMNS}))
    return out, problems + _header_problems(name, sorted(unknown) + list(REQUIRED))


def _header_problems(name: str, header: list[str]) -> list[str]:
    """An unknown column (with the closest known one), a missing or repeated one."""
    problems = []
    for column in dict.fromkeys(header):
        if column not in COLUMNS:
            close = difflib.get_close_matches(column, COLUMNS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{name}: unknown column {column!r}{hint}; columns: "
                            f"{', '.join(COLUMNS)}")
    problems += [f"{name}: column {c!r} appears twice" for c in COLUMNS if header.count(c) > 1]
    problems += [f"{name}: no {c!r} column" for c in REQUIRED if c not in header]
    return problems


def _row(where: str, line: int, values: dict) -> tuple[Row | None, list[str]]:
    """A Row from one line's values, or None and the reasons it is not one."""
    problems, out = [], {}
    for column in COLUMNS:
        value = values.get(column)
        if column == "frame":
            out[column] = _frame(value, where, problems)
            continue
        if isinstance(value, bool) or (value is not None and not isinstance(value, (str, int))):
            problems.append(f"{where}: {column} must be text, got {value!r}")
            value = None
        out[column] = "" if value is None else str(value).strip()
    problems += [f"{where}: empty {c}" for c in REQUIRED if not out[c]]
    problems += [f"{where}: {c} {out[c]!r} must be a relative path inside RAW"
                 for c in _PATHS if out[c] and _leaves(out[c])]
    for column in ("subject", "sequence"):
        size = len(out[column].encode("utf-8"))
        if size > STRING_WIDTHS[column]:
            problems.append(f"{where}: {column} {out[column]!r} has {size} UTF-8 bytes, the "
                            f"shard stores {STRING_WIDTHS[column]}")
    if out["sequence"] and values.get("frame") in (None, ""):
        problems.append(f"{where}: sequence {out['sequence']!r} without a frame number")
    return (None if problems else Row(line=line, **out)), problems


def _frame(value, where: str, problems: list[str]) -> int:
    if value is None or value == "":
        return NO_FRAME
    try:
        frame = int(str(value).strip(), 10) if not isinstance(value, int) else value
    except ValueError:
        frame = None
    if frame is None or isinstance(value, bool) or frame < 0:
        problems.append(f"{where}: frame {value!r} is not a whole number >= 0")
        return NO_FRAME
    return frame


def _leaves(text: str) -> bool:
    """A path that is absolute or climbs out with '..' (either slash)."""
    p = PurePosixPath(text.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(text) > 1 and text[1] == ":")


def _repeats(name: str, rows: list[Row]) -> list[str]:
    """A path given twice; a sequence that changes subject or label, or repeats a frame."""
    problems, first, seq, frames = [], {}, {}, {}
    for r in rows:
        key = PurePosixPath(r.path.replace("\\", "/")).as_posix()
        if key in first:
            problems.append(f"{name}:{r.line}: duplicate path {r.path!r} (first on line "
                            f"{first[key]})")
        first.setdefault(key, r.line)
        if not r.sequence:
            continue
        head = seq.setdefault(r.sequence, r)
        for field in ("subject", "label"):
            if getattr(r, field) != getattr(head, field):
                problems.append(f"{name}:{r.line}: sequence {r.sequence!r} has {field} "
                                f"{getattr(r, field)!r} here but {getattr(head, field)!r} on "
                                f"line {head.line}")
        at = frames.setdefault((r.sequence, r.frame), r.line)
        if at != r.line:
            problems.append(f"{name}:{r.line}: sequence {r.sequence!r} frame {r.frame} repeats "
                            f"line {at}")
    return problems
