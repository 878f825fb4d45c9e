"""Bosphorus adapter: ``bs000/bs000_E_ANGER_0.bnt`` ... -> one ScanRecord per scan, and its
reader (``.bnt`` range grid, ``.lm3`` landmarks, the texture the header names).

Stage: dataset discovery and raw input. Names follow docs/formats.md#bosphorus-layout:
``bsNNN_<CLASS>_<CODE>_<k>``; only ``E_*`` emotions and ``N_N`` carry an expression label.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..constants import BOSPHORUS_CAPTURES
from ..errors import ScanError
from ..io import load_bnt, load_lm3
from ..schema import CLASS_NAMES, INTENSITY_UNGRADED
from ._walk import folder_records, group_files, missing_roles, scan_problem
from .adapter import Adapter, RawScan
from .records import ScanRecord
from .textures import load_texture

# capture class+code -> class name ("E_ANGER" -> "anger", "N_N" -> "neutral")
EXPRESSION_CAPTURES = {capture: name for name, capture in BOSPHORUS_CAPTURES.items()}

_SUBJECT = r"bs\d{3}"
# Any case (copies through other file systems change it): ids are spelled bs000_E_ANGER_0.
_NAME = re.compile(r"^(?P<subject>bs\d{3})_(?P<capture>[A-Z]+_[A-Z0-9]+(?:_[A-Z0-9]+)*?)"
                   r"_(?P<k>\d+)\.(?P<ext>\w+)$", re.IGNORECASE)
_ROLES = {"bnt": "mesh", "png": "texture", "lm3": "landmarks", "lm2": "landmarks2d"}
_EXPECTED = ("mesh", "texture", "landmarks", "landmarks2d")


def parse_name(name: str) -> tuple[str, str, dict] | None:
    """``bs000_E_ANGER_0.bnt`` -> ("bs000_E_ANGER_0", "mesh", fields); None otherwise.
    Case does not matter: ``BS000_e_anger_0.BNT`` is scan bs000_E_ANGER_0 too."""
    m = _NAME.match(name)
    role = _ROLES.get(m["ext"].lower()) if m else None
    if role is None:
        return None
    subject, capture = m["subject"].lower(), m["capture"].upper()
    fields = {"subject": subject, "capture": capture,
              "expression": EXPRESSION_CAPTURES.get(capture)}
    return f"{subject}_{capture}_{m['k']}", role, fields


def walk_bosphorus(root: str | os.PathLike) -> list[ScanRecord]:
    """Every Bosphorus scan under ``root`` (per-subject folders or flat), sorted by scan_id.

    Captures other than the six emotions and neutral get ``expression=None``; intensity is
    always ``schema.INTENSITY_UNGRADED``. Missing .bnt, .png, .lm3 or .lm2 are named in
    ``missing`` ("mesh", "texture", "landmarks", "landmarks2d"). A folder that cannot be
    walked, or a scan file that cannot be read, gives a record with ``problem`` set.
    Raises Fer3dDataError when no scan is found.

    Example:
        >>> records = walk_bosphorus("BosphorusDB")  # doctest: +SKIP
        >>> records[0].scan_id, records[0].capture, records[0].expression  # doctest: +SKIP
        ('bs000_E_ANGER_0', 'E_ANGER', 'anger')
    """
    scans, unwalked = group_files(root, parse_name, "bosphorus", mesh_suffix=".bnt")
    records = [ScanRecord(dataset="bosphorus", scan_id=scan_id, subject=f["subject"],
                          expression=f["expression"], intensity=INTENSITY_UNGRADED,
                          capture=f["capture"], mesh=roles.get("mesh"),
                          texture=roles.get("texture"),
                          landmarks=roles.get("landmarks"), landmarks2d=roles.get("landmarks2d"),
                          missing=missing_roles(roles, _EXPECTED), root=Path(root),
                          problem=scan_problem(problems))
               for scan_id, (f, roles, problems) in scans.items()]
    records += folder_records("bosphorus", root, unwalked, _SUBJECT)
    return sorted(records, key=lambda r: r.scan_id)


def read_bosphorus(record: ScanRecord, cfg) -> RawScan:
    """The valid cells of the ``.bnt`` range grid, its texture and ``.lm3``; a capture that is
    no expression (action units, poses, occlusions) is refused, except in a loose scan
    (capture "", given to fer3d-predict: read whatever it shows)."""
    sid = record.scan_id
    if record.expression is None and record.capture:  # "": a loose scan (fer3d-predict)
        raise ScanError("read", f"capture {record.capture} is not an expression scan", sid)
    if record.mesh is None:
        raise ScanError("read", "missing range grid file "
                                f"(missing: {', '.join(record.missing) or 'mesh'})", sid)
    rng = load_bnt(record.mesh)
    return RawScan(points=rng.xyz[rng.valid], image=load_texture(record, rng.texture, cfg),
                   native=None if record.landmarks is None else load_lm3(record.landmarks),
                   grid_valid=rng.valid, grid_uv=rng.uv)


ADAPTER = Adapter(
    name="bosphorus", title="Bosphorus", walk=walk_bosphorus, read=read_bosphorus,
    example="bs000/bs000_E_ANGER_0.bnt (+ .lm3, .png)", landmark_scheme="bosphorus",
    label_names=CLASS_NAMES, selection=("subjects", "expressions"))
