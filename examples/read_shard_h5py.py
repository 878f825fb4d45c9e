"""Read a fer3d shard with plain h5py + numpy (no fer3d code): attributes, index, one sample.

Usage: python examples/read_shard_h5py.py SHARD.h5
Schema: docs/shards.md.
"""

import json
import os
import sys

import h5py
import numpy as np


def open_shard_h5py(path: str) -> h5py.File:
    """h5py.File(path), refusing a virtual (``merge --virtual``) shard whose parts are gone.

    h5py reads a missing part of a virtual dataset as zeros and empty strings, silently.
    """
    f = h5py.File(path, "r")
    folder = os.path.dirname(os.path.abspath(path))
    for name in ("depth", "index/sample_id"):
        if f[name].is_virtual:
            for source in f[name].virtual_sources():
                if not os.path.exists(os.path.join(folder, source.file_name)):
                    f.close()
                    sys.exit(f"{path}: merged shard whose part {source.file_name} is missing; "
                             "keep the parts beside it or merge without --virtual")
    return f


def main(path: str) -> None:
    with open_shard_h5py(path) as f:
        print("attributes:")
        for key, value in f.attrs.items():
            print(f"  {key} = {value}")
        config = json.loads(f["config"][()])
        print(f"config: {len(config)} parameters, e.g. image_size={config['image_size']}, "
              f"smoothness={config['smoothness']}")

        # The index: fixed-length UTF-8 strings (decode with .asstr()) and integer codes;
        # label codes index the class names the shard was written with.
        ids = f["index/sample_id"].asstr()[:]
        subjects = f["index/subject"].asstr()[:]
        label = f["index/label"][:]
        names = list(f.attrs["class_names"])
        sequence = f["index/sequence"].asstr()[:]
        n_subjects = len(np.unique(subjects))
        print(f"{len(ids)} samples of {n_subjects} subjects; first: {ids[:3].tolist()}")
        print(f"{len(np.unique(sequence[sequence != '']))} capture sequences; masks: "
              f"{f.attrs['masks']}")

        # One sample: index i of every per-sample dataset (one chunk each).
        i = 0
        print(f"sample {i} ({ids[i]}, {names[label[i]]}):")
        for name in ("texture", "depth", "coverage", "mask", "regions", "mask56", "mask28",
                     "landmarks", "landmarks68"):
            a = f[name][i]
            print(f"  {name:12s} {str(a.shape):14s} {a.dtype}")
        depth = f["depth"][i]
        covered = f["coverage"][i]
        lo, hi = depth[covered].min(), depth[covered].max()
        print(f"  depth over scanned cells: {lo:.1f} .. {hi:.1f} mm")

        # A batch: h5py needs increasing row indices; sort, read, then undo the order.
        rows = np.random.default_rng(0).permutation(len(ids))[:3]
        order = np.argsort(rows)
        batch = np.empty((len(rows), *f["depth"].shape[1:]), f["depth"].dtype)
        batch[order] = f["depth"][rows[order]]
        print(f"batch of rows {rows.tolist()}: depth {batch.shape}")

        print("class counts:")
        counts = np.bincount(label, minlength=len(names))
        for name, n in zip(names, counts):
            print(f"  {name:10s} {n}")
        print(f"failed scans: {f['errors/source'].shape[0]}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
