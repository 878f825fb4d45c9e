"""What a dataset adapter tells the prep chain, and the raw scan its reader returns.

Stage: dataset discovery and raw input. An :class:`Adapter` is one registered dataset
(:data:`fer3d_data.datasets.ADAPTERS`): how to walk its raw tree into
:class:`~fer3d_data.datasets.ScanRecord` rows, how to read one scan into a :class:`RawScan`
(the same form for every dataset), its native landmark scheme and label names, and the
inputs its ``fer3d-prep`` command takes. The prep chain and the command line read these
fields and never a dataset's name (docs/datasets.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import Fer3dDataError


@dataclass
class RawScan:
    """A scan as read from disk, in mm, +y up, +z toward the camera (the databases' frame).

    points     (N, 3) float64 mm, the surface samples (mesh vertices, valid grid cells).
    image      (H, W, 3) uint8 RGB texture photograph, or None (no texture image).
    native     (K, 3) native 3D landmarks (:class:`fer3d_data.io.Landmarks`) or None.
    faces, uv, faces_uv
               mesh form: triangles over ``points``, their texture coordinates (origin
               bottom-left; per vertex when ``faces_uv`` is None) or None.
    colors     (N, 3) uint8 RGB per point (a PLY's vertex colours), or None.
    grid_valid, grid_uv
               range-grid form (a ``.bnt``): (H', W') bool cells that are ``points`` (row
               major) and (H', W', 2) texture coordinates (origin top-left).
    """

    points: np.ndarray
    image: np.ndarray | None
    native: object | None
    faces: np.ndarray | None = None
    uv: np.ndarray | None = None
    faces_uv: np.ndarray | None = None
    grid_valid: np.ndarray | None = None
    grid_uv: np.ndarray | None = None
    colors: np.ndarray | None = None

    @property
    def textured(self) -> bool:
        """Whether the scan has a colour to sample: a texture image or vertex colours."""
        return self.image is not None or self.colors is not None


@dataclass(frozen=True)
class WalkOption:
    """An input of an adapter's walk besides the raw root: a ``--<name>`` option of its
    command and a keyword of its ``walk``.

    kind    "file" (an existing file, passed as a Path) or "text" (passed through ``parse``,
            which raises ValueError with the reason a value is wrong).
    """

    name: str
    help: str
    kind: str = "text"
    required: bool = False
    default: str | None = None
    parse: Callable[[str], object] | None = None


@dataclass(frozen=True)
class Adapter:
    """One dataset the prep chain reads.

    name             registry key, command name (``fer3d-prep <name>``) and the shard's
                     ``dataset`` attribute.
    title            human name ("BU-3DFE").
    example          what its raw tree looks like (help and "no scans found" messages).
    walk             ``walk(root, **options) -> [ScanRecord]``, sorted, every scan once;
                     what cannot be read is a record with a ``problem``.
    read             ``read(record, cfg) -> RawScan``; raises ScanError (step "read") or a
                     reader's RawFormatError.
    landmark_scheme  native scheme of ``/landmarks`` (:mod:`fer3d_data.landmarks`); the
                     config's ``landmark_scheme`` overrides it where ``config_keys`` allow.
    label_names      the fixed class names in code order, or None: the sorted labels of
                     every walked record (a labels file).
    selection        filters of :func:`~fer3d_data.datasets.select` its command offers
                     ("subjects", "expressions", "intensities").
    expression_codes aliases accepted by ``--expressions`` ({"AN": "anger", ...}).
    options          :class:`WalkOption` inputs of ``walk`` beyond the root.
    config_keys      PrepConfig keys only this adapter reads (units, axes, scheme); other
                     adapters refuse a non-default value for them.
    """

    name: str
    title: str
    example: str
    walk: Callable[..., list]
    read: Callable[..., RawScan]
    landmark_scheme: str
    label_names: tuple[str, ...] | None = None
    selection: tuple[str, ...] = ("subjects",)
    expression_codes: dict = field(default_factory=dict)
    options: tuple[WalkOption, ...] = ()
    config_keys: tuple[str, ...] = ()

    def labels(self, records) -> tuple[str, ...]:
        """The label names of a run over ``records`` (all walked, before any selection)."""
        if self.label_names is not None:
            return self.label_names
        names = tuple(sorted({r.label for r in records if r.label is not None}))
        if not names:
            raise Fer3dDataError(f"{self.name}: no labelled scan")
        return names


def registry(*adapters: Adapter) -> dict[str, Adapter]:
    """name -> adapter; a name given twice is a programming error caught at import."""
    out: dict[str, Adapter] = {}
    for adapter in adapters:
        if adapter.name in out:
            raise ValueError(f"two dataset adapters named {adapter.name!r}")
        out[adapter.name] = adapter
    return out
