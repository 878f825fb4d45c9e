"""Dataset walkers: a raw BU-3DFE or Bosphorus tree -> sorted :class:`ScanRecord` lists.

Each walker parses file names (docs/formats.md) into subject, expression, intensity and the
paths of a scan's companions, accepting per-subject folders or one flat folder and noting
missing companions instead of failing; whatever cannot be read becomes a record with a
``problem`` (an error row later), never a silent gap. :func:`select` keeps a protocol's
subset; :func:`resolve_texture` finds a scan's texture inside the dataset tree.
"""

from __future__ import annotations

from .bosphorus import walk_bosphorus
from .bu3dfe import walk_bu3dfe
from .records import ScanRecord
from .select import select
from .textures import resolve_texture

# dataset name (schema.DATASETS) -> walker
walkers = {"bu3dfe": walk_bu3dfe, "bosphorus": walk_bosphorus}

__all__ = ["ScanRecord", "resolve_texture", "select", "walk_bosphorus", "walk_bu3dfe", "walkers"]
