"""A shard as a Hugging Face ``datasets.Dataset``, through that library's own HDF5 builder.

Stage: consumers of shards (reuse in other projects; docs/shards.md, "Reading"). The
builder makes one column per HDF5 dataset and needs every one to have a row per sample. A
shard also holds ``/config`` (a scalar) and ``/errors`` (a row per failed scan), so the
builder's own inference stops on them; given :func:`hf_features` (the per-sample datasets
and index columns, the label codes as a ``ClassLabel`` with the shard's names) it reads the
file as it is, without a conversion. ``datasets`` is optional (``pip install datasets``).
"""

from __future__ import annotations

import os

from ..clibase import require
from ..schema import INDEX_COLUMNS
from .reader import open_shard
from .spec import INDEX_DTYPES, STRING_WIDTHS


def hf_features(path: str | os.PathLike):
    """``datasets.Features`` of a shard's per-sample datasets and ``index`` columns."""
    require("datasets", "test", "reading a shard with Hugging Face datasets")
    from datasets import Array2D, Array3D, ClassLabel, Features, Value

    arrays = {2: Array2D, 3: Array3D}  # every per-sample dataset is 2-D or 3-D per sample
    with open_shard(path) as shard:
        columns = {name: arrays[len(shape)](shape=shape, dtype=dtype.name)
                   for name, (shape, dtype) in shard.spec.items()}
        index = {c: Value("string" if c in STRING_WIDTHS else INDEX_DTYPES[c].name)
                 for c in INDEX_COLUMNS}
        index["label"] = ClassLabel(names=list(shard.class_names))
    return Features({**columns, "index": index})


def load_hf(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None):
    """The shard ``path`` as a ``datasets.Dataset`` (split "train"), one row per sample:
    its per-sample arrays and an ``index`` dict (sample_id, subject, label, ...).

    >>> ds = load_hf("folder.h5")                         # doctest: +SKIP
    >>> ds.features["index"]["label"].names, ds[0]["depth"][0][:3]  # doctest: +SKIP
    """
    require("datasets", "test", "reading a shard with Hugging Face datasets")
    import datasets

    return datasets.load_dataset("hdf5", data_files=os.fspath(path), split="train",
                                 features=hf_features(path),
                                 cache_dir=None if cache_dir is None else os.fspath(cache_dir))
