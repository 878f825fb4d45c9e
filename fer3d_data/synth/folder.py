"""A synthetic labelled folder for ``fer3d-prep folder``: textured OBJ and vertex-coloured PLY
faces of four action-unit-like classes, a labels CSV and a landmark scheme YAML.

Stage: test fixtures, the demo and users' dry runs. The faces are the parametric face of
:mod:`.face` deformed per class (so classes differ learnably in depth and texture); some
scans carry landmark files (named text rows, unnamed ``.npy``), some none (dlib's
fallback); each subject has a capture sequence whose intensity rises and falls; a few rows
are broken on purpose (a truncated mesh, a missing file, a landmark file of the wrong
length), so a run writes samples and error rows. Same arguments -> same bytes.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..constants import BOSPHORUS_FACE_LANDMARKS
from ._common import render, write_image
from .face import (
    Deformation,
    FaceParams,
    face_bounds,
    face_height,
    face_mask,
    posed_face,
    subject_identity,
)
from .truth import face_landmarks

# Full (intensity 4) deformation of each class, after single FACS action units.
FOLDER_CLASSES = {
    "brow_raise": Deformation(brow_raise=8, brow_inner=2, eye_open=0.5),        # AU1+2
    "frown": Deformation(brow_raise=-4, brow_inner=-3, brow_together=4, corner_dy=-3,
                         chin_raise=2),                                          # AU4+15
    "jaw_drop": Deformation(mouth_open=14, eye_open=0.1),                       # AU26
    "smile": Deformation(corner_dy=6, mouth_stretch=8, cheek_raise=5, eye_open=-0.3),  # AU12+6
}
# The landmark scheme of the collection (written as scheme.yaml): our name -> the face's.
SCHEME_POINTS = {
    "le_out": "Outer left eye corner", "le_in": "Inner left eye corner",
    "re_in": "Inner right eye corner", "re_out": "Outer right eye corner",
    "lb_out": "Outer left eyebrow", "lb_in": "Inner left eyebrow",
    "rb_in": "Inner right eyebrow", "rb_out": "Outer right eyebrow",
    "saddle_l": "Nose saddle left", "saddle_r": "Nose saddle right",
    "nose_l": "Left nose peak", "nose_tip": "Nose tip", "nose_r": "Right nose peak",
    "mouth_l": "Left mouth corner", "lip_up": "Upper lip outer middle",
    "mouth_r": "Right mouth corner", "lip_low": "Lower lip outer middle",
}
SCHEME_YAML = """name: synth17
points: [{points}]
regions:
  eye_left: [le_out, le_in]
  eye_right: [re_in, re_out]
  brow_left: [lb_out, lb_in]
  brow_right: [rb_in, rb_out]
  nose: [saddle_l, saddle_r, nose_l, nose_tip, nose_r]
  mouth: [mouth_l, lip_up, mouth_r, lip_low]
nose_tip: nose_tip
""".format(points=", ".join(SCHEME_POINTS))
COLUMNS = ("path", "subject", "label", "texture", "landmarks", "sequence", "frame")
BROKEN = 3  # rows broken on purpose by make_folder


def folder_subjects(n: int) -> list[str]:
    return [f"p{k + 1:02d}" for k in range(n)]


def face_mesh(p: FaceParams, *, vertices: int, texture_size: int, offset: np.ndarray):
    """(V, 3) vertices in the scan frame, (F, 3) triangles, (V, 2) uv (origin bottom-left)
    and the (T, T, 3) frontal texture of face ``p`` on a regular grid over its outline."""
    xmin, xmax, ymin, ymax = face_bounds(p)
    step = np.sqrt((xmax - xmin) * (ymax - ymin) * 0.785 / vertices)
    xs, ys = np.arange(xmin, xmax, step), np.arange(ymax, ymin, -step)
    gx, gy = np.meshgrid(xs, ys)
    inside = face_mask(p, gx, gy)
    ids = np.full(gx.shape, -1)
    ids[inside] = np.arange(inside.sum())
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    tris = np.concatenate([np.stack([a, c, b], -1)[(a >= 0) & (b >= 0) & (c >= 0)],
                           np.stack([b, c, d], -1)[(b >= 0) & (c >= 0) & (d >= 0)]])
    x, y = gx[inside], gy[inside]
    xyz = np.column_stack([x, y, face_height(p, x, y)]) + offset
    span = max(xmax - xmin, ymax - ymin) / texture_size
    image = render(p, xmin + 0.5 * span, ymax - 0.5 * span, span, -span,
                   (texture_size, texture_size))
    uv = np.column_stack([(x - xmin) / (span * texture_size),
                          1.0 - (ymax - y) / (span * texture_size)])
    return xyz, tris.astype(np.int64), uv, image


def obj_text(xyz: np.ndarray, faces: np.ndarray, uv: np.ndarray, mtl: str | None) -> str:
    """Wavefront OBJ with per-vertex texture coordinates (1-based ``f v/vt``)."""
    out = io.StringIO()
    if mtl:
        out.write(f"mtllib {mtl}\nusemtl face\n")
    np.savetxt(out, xyz, fmt="v %.4f %.4f %.4f")
    np.savetxt(out, uv, fmt="vt %.6f %.6f")
    f = faces + 1
    np.savetxt(out, np.column_stack([f[:, 0], f[:, 0], f[:, 1], f[:, 1], f[:, 2], f[:, 2]]),
               fmt="f %d/%d %d/%d %d/%d")
    return out.getvalue()


def ply_text(xyz: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> str:
    """ASCII PLY with per-vertex RGB colours."""
    head = (f"ply\nformat ascii 1.0\nelement vertex {len(xyz)}\nproperty float x\n"
            "property float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
            f"property uchar blue\nelement face {len(faces)}\n"
            "property list uchar int vertex_indices\nend_header\n")
    out = io.StringIO()
    out.write(head)
    np.savetxt(out, np.column_stack([xyz, colors]), fmt="%.4f %.4f %.4f %d %d %d")
    np.savetxt(out, np.column_stack([np.full(len(faces), 3), faces]), fmt="%d %d %d %d")
    return out.getvalue()


def scheme_points(p: FaceParams, offset: np.ndarray) -> np.ndarray:
    """(17, 3) scan-frame points of SCHEME_POINTS, in its order."""
    lm = face_landmarks(p, "bosphorus")
    index = {name: i for i, name in enumerate(BOSPHORUS_FACE_LANDMARKS)}
    return lm.points[[index[v] for v in SCHEME_POINTS.values()]] + offset


def _face(seed: int, subject: str, label: str, intensity: float, key: int):
    ident = subject_identity(seed, "folder", subject)
    full = FOLDER_CLASSES[label]
    deform = Deformation(**{k: v * intensity / 4 for k, v in vars(full).items()})
    rng = np.random.default_rng([seed, 3, key] + [ord(ch) for ch in subject + label])
    return posed_face(ident, label, intensity, deform), np.asarray(ident.offset) + rng.uniform(
        -2, 2, 3)


def _write_scan(root: Path, stem: str, kind: str, p: FaceParams, offset, *, vertices: int,
                texture_size: int, landmarks: str | None) -> dict:
    """Write one scan (``kind`` "obj", "obj+texture" or "ply") and its landmark file; the
    CSV cells it needs."""
    xyz, faces, uv, image = face_mesh(p, vertices=vertices, texture_size=texture_size,
                                      offset=offset)
    mesh = root / f"{stem}.{kind[:3]}"
    mesh.parent.mkdir(parents=True, exist_ok=True)
    row = {"path": mesh.relative_to(root).as_posix()}
    if kind == "ply":
        h, w = image.shape[:2]
        cols = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
        rows = np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
        mesh.write_text(ply_text(xyz, faces, image[rows, cols]))
    else:
        png = write_image(mesh.with_suffix(".png"), image)
        mtl = None
        if kind == "obj":
            mtl = mesh.with_suffix(".mtl")
            mtl.write_text(f"newmtl face\nmap_Kd {png.name}\n")
        else:
            row["texture"] = png.relative_to(root).as_posix()
        mesh.write_text(obj_text(xyz, faces, uv, mtl.name if mtl else None))
    if landmarks:
        row["landmarks"] = _write_landmarks(mesh.with_suffix(landmarks),
                                            scheme_points(p, offset)).relative_to(root).as_posix()
    return row


def _write_landmarks(path: Path, points: np.ndarray) -> Path:
    if path.suffix == ".npy":
        with open(path, "wb") as f:
            np.save(f, points)
    else:
        path.write_text("".join(f"{n} {x:.4f} {y:.4f} {z:.4f}\n"
                                for n, (x, y, z) in zip(SCHEME_POINTS, points)))
    return path


def make_folder(out_dir, *, subjects: int = 4, seed: int = 0, frames: int = 5,
                vertices: int = 4000, texture_size: int = 256) -> Path:
    """Write a labelled folder to ``out_dir``; returns its ``labels.csv``.

    Per subject: one scan of each FOLDER_CLASSES class (OBJ with an MTL, OBJ with the
    texture in the CSV, or PLY with vertex colours, in turn; landmarks as named ``.txt``
    rows, ``.npy`` or none), and one sequence of ``frames`` OBJ frames of one class whose
    intensity rises to the apex mid-sequence and falls. Then BROKEN rows that fail on
    purpose. ``scheme.yaml`` is the landmark scheme (``--landmark-scheme``).
    """
    if subjects < 1 or frames < 1:
        raise ValueError(f"need subjects >= 1 and frames >= 1, got {subjects}, {frames}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "scheme.yaml").write_text(SCHEME_YAML)
    size = {"vertices": vertices, "texture_size": texture_size}
    classes, rows = sorted(FOLDER_CLASSES), []
    for si, subject in enumerate(folder_subjects(subjects)):
        for ci, label in enumerate(classes):
            kind = ("obj", "obj+texture", "ply")[(si + ci) % 3]
            marks = ".npy" if kind == "ply" else (".txt" if (si + ci) % 2 == 0 else None)
            p, offset = _face(seed, subject, label, 4.0, ci)
            rows.append({"subject": subject, "label": label, **_write_scan(
                root, f"{subject}/{label}", kind, p, offset, landmarks=marks, **size)})
        label = classes[si % len(classes)]
        for k in range(frames):
            level = 4.0 if frames == 1 else 1.0 + 3.0 * np.sin(np.pi * k / (frames - 1))
            p, offset = _face(seed, subject, label, level, 100 + k)
            rows.append({"subject": subject, "label": label, "sequence": f"{subject}_seq",
                         "frame": k, **_write_scan(root, f"{subject}/seq/{k:03d}", "obj", p,
                                                   offset, landmarks=".txt", **size)})
    rows += _broken_rows(root, seed, classes, size)
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return labels


def _broken_rows(root: Path, seed: int, classes: list[str], size: dict) -> list[dict]:
    """BROKEN rows of subject p01: a truncated OBJ, a missing PLY, a landmark file with too
    few rows."""
    p, offset = _face(seed, "p01", classes[0], 4.0, 900)
    row = _write_scan(root, "broken/truncated", "obj", p, offset, landmarks=None, **size)
    mesh = root / row["path"]
    mesh.write_bytes(mesh.read_bytes()[:300])
    short = _write_scan(root, "broken/short_landmarks", "obj", p, offset, landmarks=".txt",
                        **size)
    (root / short["landmarks"]).write_text("".join(  # 5 unnamed rows; the scheme has 17
        f"{x:.4f} {y:.4f} {z:.4f}\n" for x, y, z in scheme_points(p, offset)[:5]))
    base = {"subject": "p01", "label": classes[0]}
    return [{**base, **row}, {**base, "path": "broken/missing.ply"}, {**base, **short}]
