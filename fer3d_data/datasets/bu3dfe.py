"""BU-3DFE adapter: ``F0001/F0001_AN01WH_F3D.wrl`` ... -> one ScanRecord per scan, and
its reader (VRML mesh, ``.bnd`` landmarks, the texture the mesh names).

Stage: dataset discovery and raw input. Names follow docs/formats.md#bu-3dfe-layout:
``<G><NNNN>_<EX><II><RR>_<TYPE>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..constants import BU3DFE_EXPRESSION_CODES as EXPRESSION_CODES
from ..errors import ScanError
from ..io import load_bnd, load_wrl
from ..schema import CLASS_NAMES
from ._walk import folder_records, group_files, missing_roles, scan_problem
from .adapter import Adapter, RawScan
from .records import ScanRecord
from .textures import load_texture

_SUBJECT = r"[FM]\d{4}"
# Any case (copies through other file systems lower names): ids are spelled upper case.
_NAME = re.compile(r"^(?P<subject>[FM]\d{4})_(?P<expr>" + "|".join(EXPRESSION_CODES) + r")"
                   r"(?P<intensity>\d\d)(?P<ethnicity>[A-Z]{2})"
                   r"_(?P<type>F3D|RAW|F2D)\.(?P<ext>\w+)$", re.IGNORECASE)

# (type, suffix) -> role; F3D roles are ScanRecord fields, the others go to ``extra``.
_ROLES = {("F3D", "wrl"): "mesh", ("F3D", "bmp"): "texture", ("F3D", "bnd"): "landmarks",
          ("F2D", "bmp"): "f2d", ("RAW", "wrl"): "raw_wrl", ("RAW", "pse"): "raw_pse"}
_EXPECTED = ("mesh", "texture", "landmarks")


def parse_name(name: str) -> tuple[str, str, dict] | None:
    """``F0001_AN01WH_F3D.wrl`` -> ("F0001_AN01WH", "mesh", fields); None if not a BU-3DFE file.

    Intensity must be 00 for neutral and 01-04 otherwise. Case does not matter:
    ``f0001_an01wh_f3d.WRL`` is scan F0001_AN01WH too.
    """
    m = _NAME.match(name)
    if m is None:
        return None
    subject, expr, race, kind = (m[k].upper() for k in ("subject", "expr", "ethnicity", "type"))
    role = _ROLES.get((kind, m["ext"].lower()))
    intensity = int(m["intensity"])
    if role is None or (intensity == 0) != (expr == "NE") or intensity > 4:
        return None
    fields = {"subject": subject, "sex": subject[0], "ethnicity": race,
              "expression": EXPRESSION_CODES[expr], "intensity": intensity}
    return f"{subject}_{expr}{m['intensity']}{race}", role, fields


def walk_bu3dfe(root: str | os.PathLike) -> list[ScanRecord]:
    """Every BU-3DFE scan under ``root`` (per-subject folders or flat), sorted by scan_id.

    A scan is listed when any of its files exists; missing F3D mesh, texture or landmarks
    are named in ``missing``. ``extra`` holds "f2d", "raw_wrl", "raw_pse" when present.
    A folder that cannot be walked, or a scan file that cannot be read, gives a record
    with ``problem`` set. Raises Fer3dDataError when no scan is found.

    Example:
        >>> records = walk_bu3dfe("BU-3DFE")  # doctest: +SKIP
        >>> records[0].scan_id, records[0].expression, records[0].intensity  # doctest: +SKIP
        ('F0001_AN01WH', 'anger', 1)
    """
    scans, unwalked = group_files(root, parse_name, "bu3dfe", mesh_suffix=".wrl")
    records = [ScanRecord(dataset="bu3dfe", scan_id=scan_id, subject=f["subject"],
                          expression=f["expression"], intensity=f["intensity"], capture="F3D",
                          mesh=roles.get("mesh"), texture=roles.get("texture"),
                          landmarks=roles.get("landmarks"), sex=f["sex"], ethnicity=f["ethnicity"],
                          extra={k: roles[k] for k in ("f2d", "raw_wrl", "raw_pse") if k in roles},
                          missing=missing_roles(roles, _EXPECTED), root=Path(root),
                          problem=scan_problem(problems))
               for scan_id, (f, roles, problems) in scans.items()]
    records += folder_records("bu3dfe", root, unwalked, _SUBJECT)
    return sorted(records, key=lambda r: r.scan_id)


def read_bu3dfe(record: ScanRecord, cfg) -> RawScan:
    """The F3D mesh, its texture (the wrl's ``url``, else the walker's ``.bmp``) and ``.bnd``."""
    if record.mesh is None:
        raise ScanError("read", "missing mesh file "
                                f"(missing: {', '.join(record.missing) or 'mesh'})", record.scan_id)
    mesh = load_wrl(record.mesh)
    if mesh.uv is None:
        raise ScanError("read", f"{record.mesh}: no texture coordinates", record.scan_id)
    return RawScan(points=mesh.vertices, image=load_texture(record, mesh.texture, cfg),
                   native=None if record.landmarks is None else load_bnd(record.landmarks),
                   faces=mesh.faces, uv=mesh.uv, faces_uv=mesh.faces_uv)


ADAPTER = Adapter(
    name="bu3dfe", title="BU-3DFE", walk=walk_bu3dfe, read=read_bu3dfe,
    example="F0001/F0001_AN01WH_F3D.wrl (+ .bnd, .bmp)", landmark_scheme="bu3dfe83",
    label_names=CLASS_NAMES, selection=("subjects", "expressions", "intensities"),
    expression_codes=EXPRESSION_CODES)
