"""Synthetic raw BU-3DFE and Bosphorus trees, byte for byte in the formats of docs/formats.md,
and a synthetic labelled folder (OBJ/PLY faces of four non-expression classes, :mod:`.folder`).

Stage: test fixtures, the demo and users' dry runs. A parametric face (analytic height
field, albedo, landmarks; :mod:`.face`) with seeded identities and six expressions whose
deformation grows with intensity is written as BU-3DFE (``_F3D.wrl``, ``.bnd``, ``.bmp``)
or Bosphorus (``.bnt``, ``.png``, ``.lm3``, ``.lm2``) scans. The same arguments always give
the same bytes; :func:`scan_truth` returns the ground truth of any written scan.

Example (a 25-scan tree of small meshes in ``out/F0001``)::

    paths = make_bu3dfe("out", subjects=1, vertices=300, texture_size=32, f2d_size=32)
"""

from __future__ import annotations

from ._common import MARKERS_BOSPHORUS, MARKERS_BU3DFE
from .bosphorus import (
    BNT_VARIANTS,
    LM_VARIANTS,
    BosphorusScan,
    bnt_bytes,
    bosphorus_subjects,
    build_bosphorus_scan,
    lm2_text,
    lm3_text,
    make_bosphorus,
    write_bosphorus_scan,
)
from .bu3dfe import (
    WRL_VARIANTS,
    Bu3dfeScan,
    bnd_text,
    bu3dfe_scans,
    bu3dfe_subjects,
    build_bu3dfe_scan,
    fan,
    make_bu3dfe,
    write_bu3dfe_scan,
    wrl_text,
)
from .face import (
    EXPRESSION_DEFORMATIONS,
    Deformation,
    FaceParams,
    Identity,
    face_albedo,
    face_bounds,
    face_height,
    face_mask,
    face_params,
    subject_identity,
)
from .folder import FOLDER_CLASSES, make_folder
from .truth import BOSPHORUS_NAMES, BU3DFE_NAMES, ScanTruth, face_landmarks, scan_truth

__all__ = [
    "BNT_VARIANTS", "BOSPHORUS_NAMES", "BU3DFE_NAMES", "BosphorusScan", "Bu3dfeScan",
    "Deformation", "EXPRESSION_DEFORMATIONS", "FOLDER_CLASSES", "FaceParams", "Identity",
    "LM_VARIANTS",
    "MARKERS_BOSPHORUS", "MARKERS_BU3DFE", "ScanTruth", "WRL_VARIANTS",
    "bnd_text", "bnt_bytes", "bosphorus_subjects", "bu3dfe_scans", "bu3dfe_subjects",
    "build_bosphorus_scan", "build_bu3dfe_scan", "face_albedo", "face_bounds", "face_height",
    "face_landmarks", "face_mask", "face_params", "fan", "lm2_text", "lm3_text",
    "make_bosphorus", "make_bu3dfe", "make_folder", "scan_truth", "subject_identity",
    "write_bosphorus_scan", "write_bu3dfe_scan", "wrl_text",
]

