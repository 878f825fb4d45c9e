"""Landmark schemes: the point order of a landmark file, the region groups the salient
masks are drawn from, and the point that is the nose tip; shipped or from a YAML file.

Stage: raw input to preprocessing (landmarks, nose tip, pose, masks). A scheme is named by
a shipped key (``bu3dfe83``, ``bosphorus``, ``dlib68``) or by the path of a small YAML file
(docs/datasets.md)::

    name: my22                 # stored in the shard (default: the file's stem)
    points: [le_out, le_in, re_in, re_out, nose_tip, ...]   # row order of the files
    regions:                   # names of ``points``; "left" = the viewer's left
      eye_left: [le_out, le_in]
      eye_right: [re_in, re_out]
      brow_left: []            # optional, like brow_right
      nose: [nose_tip, ...]
      mouth: [...]
    nose_tip: nose_tip         # optional

Every process resolves a name the same way (:func:`get_scheme`, cached), so worker
processes and Ray tasks need only the string.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from .constants import BOSPHORUS_LANDMARK_NAMES
from .errors import Fer3dDataError, RawFormatError

# Region groups the masks and the pose read; brows may be empty in a user's scheme.
GROUP_NAMES = ("eye_left", "eye_right", "brow_left", "brow_right", "nose", "mouth")
_REQUIRED = ("eye_left", "eye_right", "nose", "mouth")
_YAML_SUFFIXES = (".yaml", ".yml")
_MAX_SCHEME_BYTES = 2**20


@dataclass(frozen=True)
class Scheme:
    """A landmark scheme.

    name      stored as ``/landmarks.attrs["scheme"]``.
    names     (K,) point names in canonical order: the rows of ``/landmarks``.
    groups    region -> point names (GROUP_NAMES; "left"/"right" are the viewer's sides).
    nose_tip  the name of the nose-tip point, or None.
    """

    name: str
    names: tuple[str, ...]
    groups: dict
    nose_tip: str | None = None


def _rows(first: int, last: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(first, last + 1))


SHIPPED = {s.name: s for s in (
    Scheme("bu3dfe83", _rows(1, 83), {  # 1-based .bnd rows: docs/formats.md#landmark-schemes
        "eye_left": _rows(1, 8), "eye_right": _rows(9, 16),
        "brow_left": _rows(17, 26), "brow_right": _rows(27, 36),
        "nose": _rows(37, 48), "mouth": _rows(49, 68)}),
    Scheme("bosphorus", BOSPHORUS_LANDMARK_NAMES, {
        "eye_left": ("Outer left eye corner", "Inner left eye corner"),
        "eye_right": ("Inner right eye corner", "Outer right eye corner"),
        "brow_left": ("Outer left eyebrow", "Middle left eyebrow", "Inner left eyebrow"),
        "brow_right": ("Inner right eyebrow", "Middle right eyebrow", "Outer right eyebrow"),
        "nose": ("Nose saddle left", "Nose saddle right", "Left nose peak", "Nose tip",
                 "Right nose peak"),
        "mouth": ("Left mouth corner", "Upper lip outer middle", "Right mouth corner",
                  "Upper lip inner middle", "Lower lip inner middle", "Lower lip outer middle")},
        nose_tip="Nose tip"),
    Scheme("dlib68", _rows(0, 67), {  # iBUG 300-W, 0-based
        "brow_left": _rows(17, 21), "brow_right": _rows(22, 26), "nose": _rows(27, 35),
        "eye_left": _rows(36, 41), "eye_right": _rows(42, 47), "mouth": _rows(48, 67)},
        nose_tip="30"),
)}
# Canonical point order and region groups of each shipped scheme.
SCHEME_NAMES = {name: s.names for name, s in SHIPPED.items()}
GROUPS = {name: s.groups for name, s in SHIPPED.items()}


def is_scheme_file(ref: str) -> bool:
    """Whether ``ref`` names a YAML scheme file rather than a shipped scheme."""
    return Path(str(ref)).suffix.lower() in _YAML_SUFFIXES


def get_scheme(ref: str | Scheme) -> Scheme:
    """The scheme a shipped name or a YAML path names; Fer3dDataError saying why not."""
    if isinstance(ref, Scheme):
        return ref
    if ref in SHIPPED:
        return SHIPPED[ref]
    if is_scheme_file(ref):
        return _load(os.path.abspath(ref))
    raise Fer3dDataError(f"unknown landmark scheme {ref!r}: use one of {', '.join(SHIPPED)} or "
                         "a .yaml file (docs/datasets.md)")


def find_scheme(ref: str) -> Scheme | None:
    """:func:`get_scheme`, or None for a name without regions (e.g. ``bu3dfe_pse``)."""
    try:
        return get_scheme(ref)
    except Fer3dDataError:
        return None


@functools.lru_cache(maxsize=16)
def _load(path: str) -> Scheme:
    import yaml

    from .clibase import load_yaml, one_line  # duplicate keys and alias bombs refused
    from .io._common import read_bytes

    try:
        data = load_yaml(read_bytes(path, max_bytes=_MAX_SCHEME_BYTES).decode("utf-8"))
    except (RawFormatError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise Fer3dDataError(f"{path}: cannot read landmark scheme ({one_line(e)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise Fer3dDataError(f"{path}: a landmark scheme is a mapping with a 'points' list")
    names = tuple(str(p) for p in data["points"])
    regions = data.get("regions") or {}
    problems = _scheme_problems(names, regions, data.get("nose_tip"))
    if problems:
        raise Fer3dDataError(f"{path}: " + "; ".join(problems))
    groups = {g: tuple(str(p) for p in regions.get(g) or ()) for g in GROUP_NAMES}
    tip = data.get("nose_tip")
    return Scheme(str(data.get("name") or Path(path).stem), names, groups,
                  None if tip is None else str(tip))


def _scheme_problems(names: tuple[str, ...], regions, nose_tip) -> list[str]:
    """Every reason a scheme file's points, regions and nose tip do not fit together."""
    if not isinstance(regions, dict):
        return ["'regions' must map region names to lists of points"]
    problems = [] if len(set(names)) == len(names) and names else ["points must be unique names"]
    problems += [f"unknown region {r!r} (regions: {', '.join(GROUP_NAMES)})"
                 for r in regions if r not in GROUP_NAMES]
    problems += [f"region {r} is missing or empty" for r in _REQUIRED if not regions.get(r)]
    for region, members in regions.items():
        if not isinstance(members, (list, type(None))):
            problems.append(f"region {region} must be a list of points")
            continue
        unknown = [str(p) for p in (members or ()) if str(p) not in names]
        if unknown:
            problems.append(f"region {region} names points not in 'points': {unknown[:5]}")
    if nose_tip is not None and str(nose_tip) not in names:
        problems.append(f"nose_tip {nose_tip!r} is not one of the points")
    return problems
