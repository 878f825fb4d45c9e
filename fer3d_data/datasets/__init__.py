"""Dataset adapters: one module per dataset, registered by name in :data:`ADAPTERS`.

Stage: dataset discovery and raw input. Each adapter (:class:`Adapter`) walks a raw tree
(the databases' file names: docs/formats.md) into sorted :class:`ScanRecord` lists
(subject, label, the paths of a scan's files; what cannot be read becomes a record with a
``problem``, an error row later, never a silent gap) and reads one scan into a
:class:`RawScan`. The prep chain and ``fer3d-prep`` take
everything dataset-specific from here. :func:`select` keeps a protocol's subset;
:func:`resolve_texture` finds a scan's texture inside the dataset tree. Adding a dataset is
one module with an ``ADAPTER`` and one line below (docs/datasets.md).
"""

from __future__ import annotations

from ..errors import Fer3dDataError
from . import bosphorus, bu3dfe, folder
from .adapter import Adapter, RawScan, WalkOption, registry
from .bosphorus import walk_bosphorus
from .bu3dfe import walk_bu3dfe
from .records import ScanRecord
from .select import select
from .textures import resolve_texture

ADAPTERS = registry(bu3dfe.ADAPTER, bosphorus.ADAPTER, folder.ADAPTER)


def adapter(name: str) -> Adapter:
    """The adapter registered as ``name``; Fer3dDataError naming the known ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise Fer3dDataError(f"unknown dataset {name!r}; known: {', '.join(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "Adapter", "RawScan", "ScanRecord", "WalkOption", "adapter",
           "resolve_texture", "select", "walk_bosphorus", "walk_bu3dfe"]
