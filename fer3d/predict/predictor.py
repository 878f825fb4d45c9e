"""A trained model used on new faces: ``fer3d.load_model(path)`` and what fer3d-predict runs.

Stage: raw scans, shards or arrays -> class probabilities (torch-free at import: an
exported ``.onnx`` model predicts with prep + onnxruntime alone). :func:`load_model` reads
a final model directory, a campaign run directory (its cells' weights as an ensemble), one
cell, a weights file, or an exported ``.onnx`` file, with its card
(:mod:`fer3d.predict.card`). :class:`Predictor` turns stored samples into the model's
inputs (:func:`fer3d.train.contract.model_inputs`), averages the members' softmaxes, and
predicts raw scans through the training prep chain with the model's prep config
(:mod:`fer3d.predict.scans`): one row per input, a failed scan a row with its error.

>>> model = fer3d.load_model("models/afnet_m")                 # doctest: +SKIP
>>> rows = model.predict_scans(["new/F0100_HA04WH_F3D.wrl"])   # doctest: +SKIP
>>> rows[0]["predicted"], rows[0]["p_happiness"]               # doctest: +SKIP
('happiness', 0.93)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer3d.errors import CheckpointError, ConfigError
from fer3d.predict import scans
from fer3d.predict.card import card_of
from fer3d.predict.rows import mean_softmax, prediction_rows
from fer3d.settings import DEFAULT_BATCH_SIZE
from fer3d.train.contract import MASK_GRID, model_inputs
from fer3d_data.schema import EXPRESSIONS


@dataclass(frozen=True)
class Predictions:
    """``probabilities`` (N, classes), each row summing to 1, over ``class_names``."""

    probabilities: np.ndarray
    class_names: tuple[str, ...]

    @property
    def indices(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> list[str]:
        """The predicted class name of each sample."""
        return [self.class_names[i] for i in self.indices]


def _batched(samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One sample's or a batch's arrays, as a batch; a full-size mask area-resized to 56."""
    from fer3d_data.masks import area_resize

    texture = np.asarray(samples["texture"])
    one = texture.ndim == 3
    out = {k: np.asarray(v)[None] if one else np.asarray(v) for k, v in samples.items()}
    mask = out.get("mask56", out.get("mask"))
    if mask is None:
        raise ValueError("samples need a 'mask' (N, 56, 56) or (N, S, S)")
    if mask.shape[-1] != MASK_GRID:
        mask = np.stack([area_resize(m, MASK_GRID) for m in mask])
    return {"texture": out["texture"], "depth": out["depth"], "mask56": mask,
            "coverage": out.get("coverage")}


class Predictor:
    """A loaded model: ``card`` (variant, class names, input contract, prep config, ...),
    ``members`` (a :class:`~fer3d.predict.eager.TorchMembers` or
    :class:`~fer3d.predict.onnxrt.OnnxMembers`), and ``batch_size`` for scans and shards."""

    def __init__(self, card: dict, members, batch_size: int = DEFAULT_BATCH_SIZE):
        self.card, self.members, self.batch_size = card, members, int(batch_size)
        self.class_names = tuple(card["class_names"])
        self.image_size = int(card["image_size"])

    def __repr__(self) -> str:
        return (f"Predictor({self.card['variant']}, {len(self.card['members'])} member(s), "
                f"{self.image_size} px, {self.members.backend})")

    def predict(self, samples: Mapping[str, np.ndarray]) -> Predictions:
        """Probabilities for stored samples: ``texture`` (N, S, S, 3) uint8, ``depth``
        (N, S, S) mm, ``mask`` (N, 56, 56) or (N, S, S) in [0, 1], optional ``coverage``
        (N, S, S) bool (default: every cell); one sample without the N axis also works."""
        arrays = _batched(samples)
        probs = [mean_softmax(self.members.logits(self.inputs(arrays, lo)))
                 for lo in range(0, len(arrays["texture"]), self.batch_size)]
        empty = np.zeros((0, len(self.class_names)), np.float32)
        return Predictions(np.concatenate(probs) if probs else empty, self.class_names)

    def inputs(self, arrays: dict, lo: int = 0, n: int | None = None) -> dict:
        """The model's inputs of ``arrays`` (stored samples, batched) ``lo`` to ``lo + n``
        (default: one batch)."""
        part = slice(lo, lo + (n or self.batch_size))
        cov = arrays["coverage"]
        return model_inputs(arrays["texture"][part], arrays["depth"][part],
                            None if cov is None else cov[part], arrays["mask56"][part],
                            self.image_size)

    def predict_scans(self, paths: list[str | os.PathLike], **kw) -> list[dict]:
        """One row per input of ``paths`` (raw scans, folders of them, shards), as
        :meth:`rows` yields them."""
        return list(self.rows(paths, **kw))

    def rows(self, paths: list[str | os.PathLike], *, workers: int = 0,
             progress: bool = False, cam_dir: str | os.PathLike | None = None
             ) -> Iterator[dict]:
        """Rows in input order: ``input``, ``sample_id``, ``label`` (the true class when the
        file name or shard says it), ``predicted``, ``p_<class>`` per class, ``landmarks``
        (native or dlib), ``warning`` and ``error`` (a failed scan: its prep step and why).
        Inputs the model cannot take are refused here, before the first row."""
        found = scans.find_inputs(paths)
        prep = self.card.get("prep_config") or {}
        if found.scans:
            if not prep:
                raise ConfigError("this model records no preprocessing config (a lone weights "
                                  "file): it can predict shards only; use a final model or "
                                  "a run directory")
            scans.check_scans(found.scans, prep)
        for shard in found.shards if prep else ():
            scans.check_same_prep(prep, _shard_config(shard), shard)
        if cam_dir is not None and not hasattr(self.members, "cams"):
            raise ConfigError("--cam needs the PyTorch weights (not an exported file)")
        return prediction_rows(self, found, prep, workers=workers, progress=progress,
                               cam_dir=cam_dir)


def _shard_config(path: str) -> dict:
    from fer3d_data.shard_index import read_shard_index

    return dict(read_shard_index([path]).configs[0])


# --------------------------------------------------------------------------- loading

def _torch_members(path: Path, ensemble: int | None, device: str):
    from fer3d_data.clibase import require

    require("torch", "train", f"{path}: PyTorch weights (an exported .onnx file needs only "
                              "onnxruntime)")
    from fer3d.predict.eager import TorchMembers
    from fer3d.train.checkpoint import load_models

    loaded = load_models(path, ensemble)
    metas = [meta for _, meta in loaded]
    kinds = {(m["variant"], m.get("image_size")) for m in metas}
    if len(kinds) > 1:
        raise CheckpointError(f"{path}: members of different variants or sizes {sorted(kinds)}")
    return TorchMembers([m for m, _ in loaded], device), metas


def load_model(path: str | os.PathLike, *, ensemble: int | None = None, device: str = "auto",
               batch_size: int = DEFAULT_BATCH_SIZE) -> Predictor:
    """The model at ``path`` ready to predict: a final model directory, a campaign run
    directory (its finished cells' weights, the first ``ensemble`` of them), a cell
    directory, a weights file, or a file of fer3d-export (``.onnx``: no torch needed;
    ``.pt2``)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model")
    if path.suffix == ".onnx":
        from fer3d.predict.onnxrt import OnnxMembers

        members = OnnxMembers(path, device)
        return Predictor(members.card, members, batch_size)
    if path.suffix == ".pt2":
        from fer3d.predict.export import ProgramMembers

        members = ProgramMembers(path, device)
        return Predictor(members.card, members, batch_size)
    members, metas = _torch_members(path, ensemble, device)
    first = metas[0]
    n = int(first.get("num_classes", len(EXPRESSIONS)))
    model = {"variant": first["variant"], "image_size": int(first.get("image_size", 224)),
             "class_names": list(first.get("class_names") or EXPRESSIONS[:n])}
    card = card_of(path, [{"file": m["path"]} for m in metas], model)
    card["members"] = card["members"][:len(metas)]
    return Predictor(card, members, batch_size)
