"""Every preprocessing parameter in one dataclass, written as JSON into each shard.

Stage: preprocessing driver (configuration). The CLI builds a :class:`PrepConfig` from its
options; :mod:`fer3d_data.prep.process` and :mod:`fer3d_data.prep.runner` read it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from ..errors import Fer3dDataError
from ..landmarks import SCHEME_NAMES
from ..schema import DATASETS, IMAGE_SIZE_STEP, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from ..shards.spec import DEPTH_DTYPES
from ..surface.gridfit import INTERPS, REGULARIZERS
from ..surface.points import SAMPLINGS
from .sanity import THRESHOLDS

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
# Numeric ranges: name -> (low, high, low is exclusive). None = unbounded.
_RANGES = {
    "image_size": (MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, False),
    "crop_radius": (0, None, True),
    "smoothness": (0, None, True),
    "outlier_nb_neighbors": (1, None, False),
    "outlier_std_ratio": (0, None, True),
    "spike_radius": (0, None, True),
    "spike_max_dev": (0, None, True),
    "min_points": (1, None, False),
    "mask_margin_px": (0, None, False),
    "compression_level": (0, 9, False),
    "min_landmark_fraction": (0, 1, False),
    "min_texture_std": (0, None, False),
    "min_depth_relief": (0, None, False),
    "min_face_depth": (None, None, False),
    "min_eye_distance": (0, None, False),
    "max_eye_distance": (0, None, True),
    "max_roll": (0, 180, False),
    "max_tip_offset": (0, None, False),
    "min_uv_inside": (0, 1, False),
    "min_texture_side": (1, None, False),
    "max_texture_aspect": (1, None, False),
    "max_edge_ratio": (0, None, True),
    "scan_timeout": (0, None, True),
    "points": (0, None, False),
    "max_image_pixels": (1, None, False),
}
# Integers that must be a multiple of a step: name -> (step, why).
_STEPS = {"image_size": (IMAGE_SIZE_STEP, "training attends with masks at S/4")}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass
class PrepConfig:
    """Every preprocessing parameter; written as JSON into the shard's ``/config``.

    dataset            "bu3dfe" or "bosphorus".
    image_size         S: side of the depth/texture grid in pixels, a multiple of 4 in 8..1024.
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
    min_landmark_fraction ... max_edge_ratio
                       sanity thresholds every sample must pass (:data:`.sanity.THRESHOLDS`,
                       the one table of them; docs/preprocessing.md gives each one's reason).
    scan_timeout       seconds one scan may take in a worker before it becomes a
                       ``timeout`` error row (a resume may change it).

    Values are checked and coerced once, here (``"false"`` -> False, ``"224"`` -> 224);
    every bad key is named in one :class:`Fer3dDataError`.

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
    min_landmark_fraction: float = THRESHOLDS["min_landmark_fraction"][0]
    min_texture_std: float = THRESHOLDS["min_texture_std"][0]
    min_depth_relief: float = THRESHOLDS["min_depth_relief"][0]
    min_face_depth: float = THRESHOLDS["min_face_depth"][0]
    min_eye_distance: float = THRESHOLDS["min_eye_distance"][0]
    max_eye_distance: float = THRESHOLDS["max_eye_distance"][0]
    max_roll: float = THRESHOLDS["max_roll"][0]
    max_tip_offset: float = THRESHOLDS["max_tip_offset"][0]
    min_uv_inside: float = THRESHOLDS["min_uv_inside"][0]
    min_texture_side: int = THRESHOLDS["min_texture_side"][0]
    max_texture_aspect: float = THRESHOLDS["max_texture_aspect"][0]
    max_edge_ratio: float = THRESHOLDS["max_edge_ratio"][0]
    scan_timeout: float = 300.0

    # Keys that change how a run goes, never a sample: a resume may change them.
    RUN_ONLY: ClassVar[tuple[str, ...]] = ("scan_timeout",)

    def __post_init__(self):
        problems = []
        for f in dataclasses.fields(self):
            try:
                setattr(self, f.name, _checked(f.name, type(f.default), getattr(self, f.name)))
            except ValueError as e:
                problems.append(f"{f.name} {e}")
        if problems:
            raise Fer3dDataError("invalid preprocessing config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict of every parameter."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PrepConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass)."""
        if not isinstance(d, dict):
            raise Fer3dDataError("a preprocessing config must be a mapping of keys to values, "
                                 f"got {type(d).__name__}")
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



def _checked(name: str, kind: type, value):
    """``value`` as ``kind`` (bool, int, float or str) within the key's range, else ValueError."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(f"must be a boolean (true or false), got {value!r}")
    if kind is str:
        allowed = DATASETS if name == "dataset" else CHOICES[name]
        if value not in allowed:
            raise ValueError(f"must be one of {allowed}, got {value!r}")
        return value
    out = _number(kind, value)
    low, high, open_low = _RANGES[name]
    if ((low is not None and (out < low or (open_low and out == low)))
            or (high is not None and out > high)):
        bounds = f"{'>' if open_low else '>='} {low}" + ("" if high is None else f" and <= {high}")
        raise ValueError(f"must be {bounds}, got {value!r}")
    if name in _STEPS and out % _STEPS[name][0]:
        raise ValueError(f"must be a multiple of {_STEPS[name][0]} ({_STEPS[name][1]}), "
                         f"got {value!r}")
    return out


def _number(kind: type, value):
    """An int or a finite float from a number or its text; bools and 1.5 as an int refused."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value!r}")
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"must be finite, got {value!r}")
    if kind is int:
        if not out.is_integer():
            raise ValueError(f"must be an integer, got {value!r}")
        return int(out)
    return out
