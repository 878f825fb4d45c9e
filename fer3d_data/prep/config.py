"""Every preprocessing parameter in one dataclass, written as JSON into each shard.

Stage: preprocessing driver (configuration). The CLI builds a :class:`PrepConfig` from its
options; :mod:`fer3d_data.prep.process` and :mod:`fer3d_data.prep.runner` read it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import ClassVar

from ..datasets import ADAPTERS, adapter
from ..errors import Fer3dDataError
from ..schema import IMAGE_SIZE_STEP, MASKS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from ..schemes import Scheme, get_scheme, is_scheme_file
from ..shards.spec import DEPTH_DTYPES
from ..surface.axes import AXES, UNITS
from ..surface.gridfit import INTERPS, REGULARIZERS
from ..surface.points import SAMPLINGS
from .sanity import THRESHOLDS

# Allowed values of the enumerated parameters (the command line lists the same tuples).
CHOICES = {
    "dataset": tuple(ADAPTERS),
    "interp": INTERPS,
    "regularizer": REGULARIZERS,
    "landmarks": ("auto", "native", "dlib"),
    "masks": MASKS,
    "units": tuple(UNITS),
    "up": AXES,
    "front": AXES,
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

    dataset            the adapter that reads the raw tree (fer3d_data.datasets.ADAPTERS).
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
    masks              "landmarks" (salient-region masks from them) or "none" (every mask
                       zero, no landmark step: scans without landmarks and texture).
    landmark_scheme    the scheme of the scans' landmark files: a shipped name or a YAML
                       file (fer3d_data.schemes); "" = the dataset's native scheme.
    units              unit of the raw coordinates: "mm", "cm" or "m" (stored in mm).
    up, front          the raw axes that point up and toward the camera ("+y", "+z" in the
                       databases); the chain turns them into +y and +z.
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

    >>> PrepConfig.from_dict(PrepConfig(image_size=64).to_dict()).image_size
    64
    """

    dataset: str = tuple(ADAPTERS)[0]  # the first registered adapter
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
    masks: str = "landmarks"
    landmark_scheme: str = ""
    units: str = "mm"
    up: str = "+y"
    front: str = "+z"
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
        problems += self._adapter_problems()
        if problems:
            raise Fer3dDataError("invalid preprocessing config: " + "; ".join(problems))

    def _adapter_problems(self) -> list[str]:
        """Keys of another adapter set here, axes that do not make a frame, a bad scheme."""
        if self.dataset not in ADAPTERS:
            return []  # already reported
        owned = {k for a in ADAPTERS.values() for k in a.config_keys}
        allowed = set(adapter(self.dataset).config_keys)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        problems = [f"{k} does not apply to dataset {self.dataset}" for k in sorted(owned - allowed)
                    if getattr(self, k) != defaults[k]]
        if self.up[1] == self.front[1]:
            problems.append(f"up {self.up} and front {self.front} must be different axes")
        try:
            self.scheme()
        except Fer3dDataError as e:
            problems.append(f"landmark_scheme: {e}")
        return problems

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

    def scheme(self) -> Scheme:
        """The landmark scheme of ``/landmarks``: ``landmark_scheme``, else the dataset's."""
        return get_scheme(self.landmark_scheme or adapter(self.dataset).landmark_scheme)



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
        allowed = CHOICES.get(name)
        if allowed is None:  # a scheme name or file, checked as a whole; a file by its absolute
            # path, so every worker (a Ray task's folder differs) finds the same one
            return os.path.abspath(value) if is_scheme_file(value) else str(value)
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
