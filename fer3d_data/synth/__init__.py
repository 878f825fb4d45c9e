"""Synthetic raw BU-3DFE and Bosphorus trees, byte for byte in the formats of FORMATS.md.

Stage: test fixtures, the demo and users' dry runs. A parametric face (analytic height
field, albedo, landmarks; :mod:`.face`) with seeded identities and six expressions whose
deformation grows with intensity is written as BU-3DFE (``_F3D.wrl``, ``.bnd``, ``.bmp``)
or Bosphorus (``.bnt``, ``.png``, ``.lm3``, ``.lm2``) scans. The same arguments always give
the same bytes; :func:`scan_truth` returns the ground truth of any written scan.

Example (a 25-scan tree of small meshes in ``out/F0001``)::

    paths = make_bu3dfe("out", subjects=1, vertices=300, texture_size=32, f2d_size=32)
"""

from __future__ import annotations

import argparse

from ._common import MARKERS_BOSPHORUS, MARKERS_BU3DFE
from .bosphorus import (BNT_VARIANTS, LM_VARIANTS, BosphorusScan, bnt_bytes, bosphorus_subjects,
                        build_bosphorus_scan, lm2_text, lm3_text, make_bosphorus,
                        write_bosphorus_scan)
from .bu3dfe import (WRL_VARIANTS, Bu3dfeScan, bnd_text, bu3dfe_scans, bu3dfe_subjects,
                     build_bu3dfe_scan, fan, make_bu3dfe, write_bu3dfe_scan, wrl_text)
from .face import (BOSPHORUS_NAMES, BU3DFE_NAMES, EXPRESSION_DEFORMATIONS, Deformation,
                   FaceParams, Identity, ScanTruth, face_albedo, face_bounds, face_height,
                   face_landmarks, face_mask, face_params, scan_truth, subject_identity)

__all__ = [
    "BNT_VARIANTS", "BOSPHORUS_NAMES", "BU3DFE_NAMES", "BosphorusScan", "Bu3dfeScan",
    "Deformation", "EXPRESSION_DEFORMATIONS", "FaceParams", "Identity", "LM_VARIANTS",
    "MARKERS_BOSPHORUS", "MARKERS_BU3DFE", "ScanTruth", "WRL_VARIANTS", "add_arguments",
    "bnd_text", "bnt_bytes", "bosphorus_subjects", "bu3dfe_scans", "bu3dfe_subjects",
    "build_bosphorus_scan", "build_bu3dfe_scan", "face_albedo", "face_bounds", "face_height",
    "face_landmarks", "face_mask", "face_params", "fan", "lm2_text", "lm3_text",
    "make_bosphorus", "make_bu3dfe", "run", "scan_truth", "subject_identity",
    "write_bosphorus_scan", "write_bu3dfe_scan", "wrl_text",
]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``fer3d-prep synth bu3dfe|bosphorus OUT``."""
    parser.add_argument("dataset", choices=("bu3dfe", "bosphorus"))
    parser.add_argument("out", help="output folder (created)")
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vertices", type=int, default=8000, help="bu3dfe: mesh vertices")
    parser.add_argument("--texture-size", type=int, default=512, help="bu3dfe: texture side (px)")
    parser.add_argument("--f2d-size", type=int, default=512, help="bu3dfe: _F2D.bmp side (px)")
    parser.add_argument("--grid", type=int, nargs=2, default=[230, 190], metavar=("ROWS", "COLS"),
                        help="bosphorus: range grid size")
    parser.add_argument("--texture-scale", type=float, default=6.0,
                        help="bosphorus: texture pixels per grid cell")
    parser.add_argument("--drop-landmarks", type=float, default=0.15,
                        help="bosphorus: probability a scan lacks 1-2 landmarks")
    parser.add_argument("--noise", type=float, default=0.0, help="gaussian z noise sigma (mm)")
    parser.add_argument("--holes", type=int, default=0, help="holes per scan")
    parser.add_argument("--spikes", type=float, default=0.0, help="fraction of points spiked")
    parser.add_argument("--outliers", type=float, default=0.0, help="fraction of outlier points")
    parser.add_argument("--missing", type=float, default=0.0,
                        help="probability that each companion file is not written")
    parser.add_argument("--variant", action="append", default=[],
                        help=f"file spelling variant, repeatable: wrl {WRL_VARIANTS}, "
                             f"lm {LM_VARIANTS}, bnt {BNT_VARIANTS}")
    parser.add_argument("--markers", action="store_true",
                        help="coloured dots at chosen landmarks in the textures")
    return parser


def run(args: argparse.Namespace) -> int:
    """Generate the tree ``args`` describe; print a one-line summary; return 0."""
    common = dict(subjects=args.subjects, seed=args.seed, noise=args.noise, holes=args.holes,
                  spikes=args.spikes, outliers=args.outliers, markers=args.markers,
                  missing=args.missing)
    if args.dataset == "bu3dfe":
        paths = make_bu3dfe(args.out, vertices=args.vertices, texture_size=args.texture_size,
                            f2d_size=args.f2d_size, wrl_variants=args.variant, **common)
    else:
        paths = make_bosphorus(args.out, grid=tuple(args.grid), texture_scale=args.texture_scale,
                               drop_landmarks=args.drop_landmarks,
                               lm_variants=[v for v in args.variant if v in LM_VARIANTS],
                               bnt_variants=[v for v in args.variant if v not in LM_VARIANTS],
                               **common)
    print(f"wrote {len(paths)} files for {args.subjects} {args.dataset} subject(s) to {args.out}")
    return 0
