"""Counting what a shard holds (``fer3d-prep inspect``).

Stage: consumers of shards.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from .reader import open_shard
from .spec import MASK_SOURCES


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """Counts of a shard: samples per subject, label and intensity, errors per step."""
    with open_shard(path) as shard:
        idx = shard.index
        errors = shard.errors()
        return {
            "path": str(path),
            "complete": not str(path).endswith(".tmp"),
            "format_version": shard.attrs["format_version"],
            "dataset": shard.attrs["dataset"],
            "producer": shard.attrs.get("producer"),
            "created": shard.attrs.get("created"),
            "image_size": shard.image_size,
            "landmark_scheme": shard.landmark_scheme,
            "parts": shard.attrs.get("parts", []),
            "n_samples": len(shard),
            "n_subjects": int(len(np.unique(idx["subject"]))),
            "masks": shard.masks,
            "by_label": {shard.class_names[k]: v for k, v in _counts(idx["label"])},
            "n_sequences": int(len(np.unique(idx["sequence"][idx["sequence"] != ""]))),
            "by_intensity": dict(_counts(idx["intensity"])),
            "by_subject": dict(_counts(idx["subject"])),
            "by_mask_source": {MASK_SOURCES[k]: v for k, v in _counts(idx["mask_source"])},
            "n_errors": len(errors),
            "errors_by_step": dict(sorted(Counter(e["step"] for e in errors).items())),
            "config": shard.config,
        }


def _counts(values) -> list[tuple[Any, int]]:
    """(value, count) pairs sorted by value."""
    return sorted(Counter(np.asarray(values).tolist()).items())
