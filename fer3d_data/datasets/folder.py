"""Generic adapter: any folder of 3D face scans listed in a labels file (``fer3d-prep folder``).

Stage: dataset discovery and raw input. Each row of the labels file
(:mod:`.labelfile`) is one scan: a mesh in any format trimesh reads or our VRML and BNT
readers, an optional texture image and landmark file, a subject, a label of any name, and
optionally the capture sequence and frame it belongs to. The raw coordinates are turned
into millimetres, +y up and +z toward the camera by ``units``, ``up`` and ``front``;
landmark files follow ``landmark_scheme`` (docs/datasets.md).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import ScanError
from ..io import MESH_SUFFIXES, load_bnd, load_bnt, load_lm3, load_mesh, load_npy, load_wrl
from ..io import load_xyz as load_text_points
from ..io.types import Landmarks
from ..landmarks import canonical_points
from ..schema import INTENSITY_UNGRADED
from ..schemes import get_scheme
from ..shards.spec import STRING_WIDTHS
from ..surface.axes import frame_matrix, to_frame
from ._walk import unreadable
from .adapter import Adapter, RawScan, WalkOption
from .frames import FRAME_MODES, check_frames, select_frames
from .labelfile import Row, read_labels
from .records import ScanRecord
from .textures import load_texture

NAME = "folder"
# Mesh files read by our own readers (VRML 2.0 meshes, Bosphorus range grids).
_OWN_SUFFIXES = (".wrl", ".bnt")


def walk_folder(root: str | os.PathLike, labels: str | os.PathLike,
                frames: str = "all") -> list[ScanRecord]:
    """One record per row of ``labels`` (paths relative to ``root``), the frames of each
    sequence chosen by ``frames`` (:func:`~.frames.select_frames`), sorted by scan id.

    A row whose files are missing or unreadable, or whose mesh format is not read here,
    gives a record with ``problem`` set (its error row). Problems of the labels file itself
    raise one Fer3dDataError listing them (:func:`~.labelfile.read_labels`).
    """
    root = Path(root)
    rows = read_labels(labels)
    records = [_record(root, Path(labels).name, row) for row in rows]
    return sorted(select_frames(records, frames), key=lambda r: r.scan_id)


def sample_id(path: str) -> str:
    """The sample id of a row: its path, or a digest and the path's end when the path
    has more UTF-8 bytes than the index column holds."""
    width, raw = STRING_WIDTHS["sample_id"], path.encode("utf-8")
    if len(raw) <= width:
        return path
    digest = hashlib.sha1(raw).hexdigest()[:16]
    return digest + "~" + raw[-(width - len(digest) - 1):].decode("utf-8", "ignore")


def _record(root: Path, labels: str, row: Row) -> ScanRecord:
    files = {role: root / getattr(row, role) if getattr(row, role) else None
             for role in ("path", "texture", "landmarks")}
    problems = []
    for role, path in files.items():
        why = None if path is None else _file_problem(path, role)
        if why:
            problems.append(f"{path}: {why}")
    return ScanRecord(dataset=NAME, scan_id=sample_id(Path(row.path).as_posix()),
                      subject=row.subject, expression=None, intensity=INTENSITY_UNGRADED,
                      capture=f"{labels}:{row.line}", mesh=files["path"],
                      texture=files["texture"], landmarks=files["landmarks"], root=root,
                      problem="; ".join(problems) or None, label=row.label,
                      sequence=row.sequence, frame=row.frame)


def _file_problem(path: Path, role: str) -> str | None:
    """Why a file a row names cannot be read: missing, unreadable, a mesh format not read."""
    if not os.path.lexists(path):
        return f"missing {'mesh' if role == 'path' else role} file"
    if role == "path" and path.suffix.lower() not in MESH_SUFFIXES + _OWN_SUFFIXES:
        return (f"mesh format {path.suffix or '(none)'} is not read (use one of "
                f"{', '.join(MESH_SUFFIXES + _OWN_SUFFIXES)})")
    return unreadable(path)


def read_folder(record: ScanRecord, cfg) -> RawScan:
    """The mesh (or range grid), texture and landmarks of one row, in mm, +y up, +z front.

    The row's ``texture`` wins over a texture the mesh names; without either the scan is
    untextured (vertex colours, if any, colour it)."""
    matrix = frame_matrix(cfg.units, cfg.up, cfg.front)
    native = _landmarks(record, cfg, matrix) if record.landmarks is not None else None
    suffix = Path(record.mesh).suffix.lower()
    if suffix == ".bnt":
        grid = load_bnt(record.mesh)
        return RawScan(points=to_frame(grid.xyz[grid.valid], matrix), native=native,
                       image=_image(record, grid.texture, cfg), grid_valid=grid.valid,
                       grid_uv=grid.uv)
    if suffix == ".wrl":
        wrl = load_wrl(record.mesh)
        image = _image(record, wrl.texture, cfg)
        mesh = RawScan(points=wrl.vertices, image=image, native=native, faces=wrl.faces,
                       uv=wrl.uv, faces_uv=wrl.faces_uv)
    else:
        tm = load_mesh(record.mesh, root=None if cfg.allow_outside_textures else record.root,
                       max_pixels=cfg.max_image_pixels)
        image = _image(record, None, cfg)
        mesh = RawScan(points=tm.vertices, image=tm.image if image is None else image,
                       native=native, faces=tm.faces, uv=tm.uv, colors=tm.colors)
    if mesh.image is not None and mesh.uv is None:
        raise ScanError("read", f"{record.mesh}: a texture image but no texture coordinates",
                        record.scan_id)
    mesh.points = to_frame(mesh.points, matrix)
    return mesh


def _image(record: ScanRecord, named: str | None, cfg) -> np.ndarray | None:
    """The row's texture, else the one the mesh file names when it exists, else None."""
    if record.texture is not None:
        return load_texture(record, None, cfg)
    if named and (Path(record.mesh).parent / named).is_file():
        return load_texture(record, named, cfg)
    return None


def _landmarks(record: ScanRecord, cfg, matrix: np.ndarray) -> Landmarks:
    """The row's landmark file in the canonical order of the run's scheme, in the frame."""
    ref = cfg.landmark_scheme or ADAPTER.landmark_scheme
    scheme, path = get_scheme(ref), Path(record.landmarks)
    suffix = path.suffix.lower()
    if suffix == ".lm3":
        lm = load_lm3(path)
        points, names = lm.points, lm.names
    elif suffix in (".bnd", ".npy"):
        points = load_bnd(path).points if suffix == ".bnd" else load_npy(path)
        names = None
    else:
        points, names = load_text_points(path)
    if names is None and len(points) != len(scheme.names):
        raise ScanError("read", f"{path}: {len(points)} unnamed landmarks, scheme "
                                f"{scheme.name} has {len(scheme.names)}", record.scan_id)
    ordered = canonical_points(Landmarks(to_frame(points, matrix), names or scheme.names, ref))
    if not np.isfinite(ordered).all(axis=1).any():
        raise ScanError("read", f"{path}: no landmark name is one of scheme {scheme.name}'s "
                                f"(e.g. {scheme.names[0]!r})", record.scan_id)
    return Landmarks(ordered, scheme.names, ref)


ADAPTER = Adapter(
    name=NAME, title="labelled folder", walk=walk_folder, read=read_folder,
    example="meshes listed in --labels labels.csv with columns path,subject,label",
    landmark_scheme="dlib68", label_names=None, selection=("subjects",),
    options=(
        WalkOption("labels", "CSV or JSON-lines file, one row per scan: path (relative to "
                             "RAW), subject, label; optional texture, landmarks, sequence, "
                             "frame (docs/datasets.md)", kind="file", required=True),
        WalkOption("frames", f"frames kept of each sequence: {', '.join(FRAME_MODES)} (apex = "
                             "the middle frame)", default="all", parse=check_frames),
    ),
    config_keys=("landmark_scheme", "units", "up", "front"))
