"""HDF5 shards: the documented output of fer3d_data (schema in docs/shards.md).

Stage: the end of preprocessing and every consumer of its output. ``spec`` holds what a
shard contains; :class:`ShardWriter` writes one (``writer``); :func:`open_shard` reads one
with h5py and numpy only (``reader``); :func:`verify` checks schema, values and checksums;
:func:`merge` joins shards written by ``--shard i/n`` runs; :func:`inspect` counts;
``hf`` reads a shard with Hugging Face ``datasets`` (optional, imported on demand).

>>> with open_shard("bu3dfe.h5") as shard:                # doctest: +SKIP
...     x = shard.sample(0)["depth"]                        # (S, S) float32 mm
"""

from .inspect import inspect
from .merge import merge
from .reader import Shard, open_shard
from .resume import preflight
from .spec import (
    DLIB_POINTS,
    ERROR_COLUMNS,
    INDEX_DTYPES,
    MASK_SOURCES,
    STRING_WIDTHS,
    array_spec,
    check_header,
    tmp_path,
)
from .verify import verify
from .writer import ShardWriter

__all__ = [
    "DLIB_POINTS", "ERROR_COLUMNS", "INDEX_DTYPES", "MASK_SOURCES", "STRING_WIDTHS", "Shard",
    "ShardWriter", "array_spec", "check_header", "inspect", "merge", "open_shard", "preflight",
    "tmp_path", "verify",
]
