"""Benchmark: how /depth may be stored, its error in mm and the bytes it saves.

Stage: benchmarks (docs/shards.md). Synthetic BU-3DFE and Bosphorus trees at the default
synth sizes are preprocessed at S = --size with ``depth_dtype="float32"`` (the reference,
written in the same run from the same scans) and ``"float16"`` (the option
``--depth-dtype float16``). For comparison the float32 depth is also rewritten with HDF5's
lossy scale-offset filter (``scaleoffset=2``: 2 decimal digits kept), which this project
does not offer (h5py-only: other HDF5 readers need the filter too, and it is slower).
Bytes and errors do not depend on the load, so nothing here is timed.

Per variant: bytes of /depth per sample (chunk storage, gzip level 4 + shuffle as the
shard writes it), the whole shard's bytes per sample, and the largest absolute error
against float32, in mm, over scanned cells (``coverage``) and over every cell.

    .venv/bin/python benchmarks/bench_depth_storage.py [--size 224] [--subjects 1] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
from _emit import emit
from bench_prep import make_trees

from fer3d_data.prep import PrepConfig, run_prep

SMOKE = {"size": 32, "subjects": 1, "workers": 0}  # tiny trees (bench_prep's), in-process


def _prep(dataset: str, records: list, out: Path, args, depth_dtype: str) -> Path:
    cfg = PrepConfig(dataset=dataset, image_size=args.size, depth_dtype=depth_dtype)
    summary = run_prep(records, out, cfg, workers=args.workers, progress=False)
    assert summary.failed == 0, summary.failures
    return out


def _scaleoffset_bytes(depth: np.ndarray, folder: Path) -> tuple[int, np.ndarray]:
    path = folder / "scaleoffset.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("depth", data=depth, chunks=(1, *depth.shape[1:]), scaleoffset=2,
                         compression="gzip", compression_opts=4, shuffle=True)
    with h5py.File(path) as f:  # reopened: the writing handle's chunk cache holds the input
        return f["depth"].id.get_storage_size(), f["depth"][()]


def _measure(ref: Path, half: Path, folder: Path) -> dict:
    with h5py.File(ref) as a, h5py.File(half) as b:
        d32, d16, cov = a["depth"][()], b["depth"][()].astype(np.float32), a["coverage"][()]
        n = len(d32)
        so_bytes, d_so = _scaleoffset_bytes(d32, folder)
        out = {"samples": n, "depth_range_mm": [float(d32.min()), float(d32.max())]}
        for name, bytes_, approx, total in (
                ("float32", a["depth"].id.get_storage_size(), d32, os.path.getsize(ref)),
                ("float16", b["depth"].id.get_storage_size(), d16, os.path.getsize(half)),
                ("scaleoffset2", so_bytes, d_so, None)):
            err = np.abs(approx.astype(np.float64) - d32)
            out[name] = {
                "depth_kb_per_sample": round(bytes_ / n / 1024, 1),
                "shard_kb_per_sample": None if total is None else round(total / n / 1024, 1),
                "max_error_mm_covered": float(err[cov].max()),
                "max_error_mm_all": float(err.max()),
            }
        out["float16_saves_kb_per_sample"] = round(
            out["float32"]["depth_kb_per_sample"] - out["float16"]["depth_kb_per_sample"], 1)
        return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--smoke", action="store_true", help=f"tiny trees: {SMOKE}")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    result = {"size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = make_trees(tmp / "raw", args.subjects, args.subjects, args.smoke)
        for dataset, records in trees.items():
            records = [r for r in records if r.expression is not None]
            ref = _prep(dataset, records, tmp / f"{dataset}32.h5", args, "float32")
            half = _prep(dataset, records, tmp / f"{dataset}16.h5", args, "float16")
            result[dataset] = _measure(ref, half, tmp)
    return emit(result, args.out)


if __name__ == "__main__":
    main()
