"""What to predict: raw scan files, folders of them and shards, as the prep chain reads them.

Stage: user's inputs -> prepared samples (torch-free). :func:`find_inputs` turns the paths
given to fer3d-predict into raw scans (a BU-3DFE ``.wrl`` with its texture and optional
``.bnd``; a Bosphorus ``.bnt`` with its ``.png`` and optional ``.lm3``; companions share the
mesh file's stem, as in both databases) and shards. A raw scan goes through the training
chain (:func:`fer3d_data.prep.process_scan`) with the model's recorded preprocessing config
(:func:`prediction_config`), its failures as error rows; a shard's samples are read as
stored once its config is checked against the model's (:func:`check_same_prep`).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fer3d.errors import ConfigError
from fer3d_data.datasets import ScanRecord
from fer3d_data.datasets.bosphorus import parse_name as parse_bosphorus
from fer3d_data.datasets.bu3dfe import parse_name as parse_bu3dfe
from fer3d_data.prep import PrepConfig
from fer3d_data.schema import INTENSITY_UNGRADED
from fer3d_data.shards import MASK_SOURCES

# Mesh suffix -> (dataset, name parser, texture suffixes, landmark suffix).
RAW_FORMATS = {".wrl": ("bu3dfe", parse_bu3dfe, (".bmp", ".png", ".jpg"), ".bnd"),
               ".bnt": ("bosphorus", parse_bosphorus, (".png", ".bmp", ".jpg"), ".lm3")}
SHARD_SUFFIXES = (".h5", ".hdf5")
DLIB_WARNING = "no landmark file: dlib 68-point landmarks on the aligned texture"
# Storage and acceptance settings of a prep config: they never change a sample's values,
# so a shard written with other values of these is still the model's kind of input.
NOT_SAMPLE_KEYS = PrepConfig.RUN_ONLY + (
    "compression", "compression_level", "points", "point_sampling", "allow_outside_textures",
    "max_image_pixels", "min_points", "min_landmark_fraction", "min_texture_std",
    "min_depth_relief")


@dataclass(frozen=True)
class Inputs:
    """The expanded inputs: raw scan records and shard paths, each in the order found."""

    scans: list[ScanRecord]
    shards: list[str]


def _is_scan_mesh(path: Path) -> bool:
    """A mesh file of a raw format, not a companion (BU-3DFE's ``_RAW.wrl`` raw capture)."""
    form = RAW_FORMATS.get(path.suffix.lower())
    if form is None:
        return False
    parsed = form[1](path.name)
    return parsed is None or parsed[1] == "mesh"


def find_inputs(paths: list[str | os.PathLike]) -> Inputs:
    """Raw scans and shards of ``paths`` (files, or folders searched recursively, sorted);
    ConfigError naming a path that is none of them. A missing scan file is a scan (its row
    says so); a missing folder or shard is refused."""
    scans, shards = [], []
    for given in map(Path, paths):
        files = sorted(p for p in given.rglob("*") if p.is_file()) if given.is_dir() else [given]
        found = 0
        for path in files:
            if path.suffix.lower() in SHARD_SUFFIXES and path.is_file():
                shards.append(os.fspath(path))
            elif _is_scan_mesh(path):
                scans.append(loose_record(path))
            else:
                continue
            found += 1
        if not found:
            what = "no such file" if not given.exists() else (
                "no raw scan (.wrl, .bnt) or shard (.h5) in it" if given.is_dir()
                else "not a raw scan (.wrl, .bnt) or a shard (.h5)")
            raise ConfigError(f"{given}: {what}")
    return Inputs(scans, shards)


def _companion(mesh: Path, suffixes: tuple[str, ...]) -> Path | None:
    """The file beside ``mesh`` of its stem and the first of ``suffixes`` found, in any case
    (copies through other file systems change it)."""
    found = {p.suffix.lower(): p for p in mesh.parent.glob(f"{glob.escape(mesh.stem)}.*")
             if p.is_file()}
    return next((found[s] for s in suffixes if s in found), None)


def loose_record(mesh: Path) -> ScanRecord:
    """The record of one raw scan file: its companions by stem; subject, expression and
    intensity from its name when it follows the database's naming, else unknown (the
    expression is then None: the row has no true label)."""
    dataset, parse, textures, landmarks = RAW_FORMATS[mesh.suffix.lower()]
    parsed = parse(mesh.name)
    fields = parsed[2] if parsed else {}
    scan_id = parsed[0] if parsed else mesh.stem
    texture, native = _companion(mesh, textures), _companion(mesh, (landmarks,))
    missing = tuple(role for role, p in (("texture", texture), ("landmarks", native)) if not p)
    return ScanRecord(dataset=dataset, scan_id=scan_id, subject=fields.get("subject", ""),
                      expression=fields.get("expression"),
                      intensity=fields.get("intensity", INTENSITY_UNGRADED),
                      capture="",  # a loose scan: read whatever capture it is
                      mesh=mesh, texture=texture, landmarks=native, missing=missing,
                      root=mesh.parent,
                      problem=None if mesh.is_file() else f"{mesh}: no such file")


# --------------------------------------------------------------------------- prep configs

def prediction_config(prep: dict) -> PrepConfig:
    """The model's prep config for new scans: as recorded, except that a scan without a
    landmark file falls back to dlib (``native`` reads as ``auto``; scans with one get the
    same masks either way)."""
    cfg = PrepConfig.from_dict(prep)
    return replace(cfg, landmarks="auto") if cfg.landmarks == "native" else cfg


def _sample_values(prep: dict) -> dict:
    values = prediction_config(prep).to_dict()
    return {k: v for k, v in values.items() if k not in NOT_SAMPLE_KEYS}


def check_same_prep(model: dict, other: dict, where: str) -> None:
    """ConfigError naming every field in which ``other`` (a shard's or a scan's prep
    config) would give other samples than the model's."""
    mine, theirs = _sample_values(model), _sample_values(other)
    diff = [f"{k}: model {mine[k]!r}, input {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]
    if diff:
        raise ConfigError(f"{where}: prepared differently from the model's training data "
                          f"({'; '.join(diff)})")


def check_scans(scans: list[ScanRecord], prep: dict) -> None:
    """Raw scans of another dataset than the model's prep config are refused up front."""
    model = PrepConfig.from_dict(prep).dataset
    for record in scans:
        if record.dataset != model:
            raise ConfigError(f"{record.mesh}: a {record.dataset} scan, prepared differently "
                              f"from the model's training data (dataset: model {model!r}, "
                              f"input {record.dataset!r})")


# --------------------------------------------------------------------------- rows

def scan_row(record: ScanRecord) -> dict:
    """The identifying columns of a raw scan's row."""
    return {"input": os.fspath(record.mesh), "sample_id": record.scan_id,
            "label": record.expression or ""}


def sample_arrays(sample) -> dict[str, np.ndarray]:
    """The stored arrays of a prepared :class:`~fer3d_data.prep.Sample` the model needs."""
    return {"texture": sample.texture, "depth": sample.depth, "coverage": sample.coverage,
            "mask56": sample.mask56}


def shard_rows(path: str, batch: int):
    """(row columns, arrays) of every sample of a shard, read ``batch`` rows at a time; the
    label is the shard's name for the sample's label code."""
    import h5py

    from fer3d_data.shard_index import read_shard_index

    index = read_shard_index([path])
    with h5py.File(path, "r") as f:
        sources = f["index/mask_source"][...]
        for lo in range(0, len(index), batch):
            part = slice(lo, min(lo + batch, len(index)))
            arrays = {k: f[k][part] for k in ("texture", "depth", "coverage", "mask56")}
            for i in range(part.start, part.stop):
                yield ({"input": path, "sample_id": str(index.sample_id[i]),
                        "label": index.class_names[int(index.label[i])],
                        "landmarks": MASK_SOURCES[int(sources[i])]},
                       {k: v[i - lo] for k, v in arrays.items()})
