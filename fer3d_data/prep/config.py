"""Every preprocessing parameter in one dataclass, written as JSON into each shard.

Stage: preprocessing driver (configuration). The CLI builds a :class:`PrepConfig` from its
options; :mod:`fer3d_data.prep.process` and :mod:`fer3d_data.prep.runner` read it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import Fer3dDataError
from ..landmarks import SCHEME_NAMES
from ..schema import DATASETS
from ..shards.spec import DEPTH_DTYPES
from ..surface.gridfit import INTERPS, REGULARIZERS
from ..surface.points import SAMPLINGS

# Native landmark scheme of each dataset; its canonical point order (fer3d_data.landmarks)
# is the order of the shard's /landmarks rows.
DATASET_SCHEMES = {"bu3dfe": "bu3dfe83", "bosphorus": "bosphorus"}

# Allowed values of the enumerated parameters (the command line lists the same tuples).
CHOICES = {
    "interp": INTERPS,
    "regularizer": REGULARIZERS,
    "landmarks": ("auto", "native", "dlib"),
    "compression": ("gzip", "lzf", "none"),
    "depth_dtype": DEPTH_DTYPES,
    "point_sampling": SAMPLINGS,
}


@dataclass
class PrepConfig:
    """Every preprocessing parameter; written as JSON into the shard's ``/config``.

    dataset            "bu3dfe" or "bosphorus".
    image_size         S: side of the depth/texture grid in pixels.
    crop_radius        mm; sphere around the nose tip, and half the grid's side.
    smoothness         gridfit smoothness s (lambda = s * |A|_1 / |R|_1).
    interp             gridfit data term: "triangle", "bilinear" or "nearest".
    regularizer        gridfit regulariser: "gradient", "laplacian" or "springs".
    pose               rotate the cropped face to frontal before gridfit.
    outlier_nb_neighbors, outlier_std_ratio
                       open3d statistical outlier removal.
    spike_radius       mm; neighbourhood of the local median depth for spike removal.
    spike_max_dev      mm; a point further than this from its local median is a spike.
    min_points         a scan with fewer points left after cleaning is an error.
    mask_margin_px     dilation of each salient region's hull, in grid pixels at S.
    landmarks          "native" (the scan's own), "dlib" (68-point detector on the aligned
                       texture) or "auto" (native where the scan has them, else dlib).
    compression        shard compression: "gzip", "lzf" or "none".
    compression_level  gzip level 0-9.
    depth_dtype        stored dtype of ``/depth``: "float32", or "float16" (half the bytes;
                       error <= 1/64 mm where |depth| < 64 mm, 1/32 mm below: docs/shards.md).
    points             P > 0 stores ``/points`` (N, P, 3): P points on the frontal surface.
    point_sampling     "fps" (farthest-point: even spacing) or "even" (uniform by area).
    allow_outside_textures
                       accept a texture that a scan file names outside the scan's folder.
    max_image_pixels   a texture image larger than this is refused (decompression bombs).

    >>> PrepConfig.from_dict(PrepConfig(dataset="bosphorus").to_dict()).dataset
    'bosphorus'
    """

    dataset: str = "bu3dfe"
    image_size: int = 224
    crop_radius: float = 90.0
    smoothness: float = 1.0
    interp: str = "triangle"
    regularizer: str = "gradient"
    pose: bool = True
    outlier_nb_neighbors: int = 20
    outlier_std_ratio: float = 3.0  # 2.0 removed genuine nostril vertices of uneven meshes
    spike_radius: float = 2.5
    spike_max_dev: float = 4.0
    min_points: int = 2000
    mask_margin_px: int = 4
    landmarks: str = "auto"
    compression: str = "gzip"
    compression_level: int = 4
    depth_dtype: str = "float32"
    points: int = 0
    point_sampling: str = "fps"
    allow_outside_textures: bool = False
    max_image_pixels: int = 40_000_000

    def __post_init__(self):
        problems = []
        if self.dataset not in DATASETS:
            problems.append(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 8 <= int(self.image_size) <= 4096:
            problems.append(f"image_size must be in [8, 4096], got {self.image_size}")
        for name in ("crop_radius", "smoothness", "outlier_std_ratio", "spike_radius",
                     "spike_max_dev"):
            if not float(getattr(self, name)) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("outlier_nb_neighbors", "min_points", "max_image_pixels"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("mask_margin_px", "points"):
            if int(getattr(self, name)) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= int(self.compression_level) <= 9:
            problems.append(f"compression_level must be in [0, 9], got {self.compression_level}")
        if problems:
            raise Fer3dDataError("invalid preprocessing config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict of every parameter."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PrepConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise Fer3dDataError(f"unknown preprocessing config keys {unknown}; "
                                 f"known: {sorted(known)}")
        return cls(**d)

    def landmark_scheme(self) -> tuple[str, tuple[str, ...]]:
        """(scheme, names) of this dataset's native landmarks, as stored in ``/landmarks``."""
        scheme = DATASET_SCHEMES[self.dataset]
        return scheme, SCHEME_NAMES[scheme]

