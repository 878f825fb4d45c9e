"""Grad-CAM of each branch (the paper's Fig. 6) and the adaptive-fusion weights per class.

Stage: checkpoints + shard samples -> figures (and fer3d-predict's per-input maps,
:func:`save_input_cams`). pytorch-grad-cam (``fer3d[cam]``) computes the
maps; :class:`StackedInputs` lets it drive the three-input model through one tensor. Each
branch's map is taken at its last block (``branches[name].layer4[-1]``) for the class the
model predicts (as pytorch-grad-cam does by default: the map explains the decision; for the
true class, often all-zero on a wrong prediction, pass ``cam_class="true"``), and scaled to
[0, 1] per image by the library. Class names are the weights' own
(:func:`fer3d.train.checkpoint.class_names_of`): a model trained on any label set is drawn
with its labels.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer3d.campaign.protocol import relabel
from fer3d.campaign.rundir import CellDir, RunDir, parse_cell_name
from fer3d.errors import Fer3dError, unknown_names
from fer3d.paper.catalog import DATASET_TITLES, VARIANT_BY_NAME
from fer3d.train import contract
from fer3d.train.checkpoint import class_names_of, load_model
from fer3d.train.dataset import ShardDataset
from fer3d_data.shard_index import read_shard_index

log = logging.getLogger(__name__)

IMAGENET_MEAN = torch.tensor(contract.IMAGENET_MEAN)[:, None, None]
IMAGENET_STD = torch.tensor(contract.IMAGENET_STD)[:, None, None]


# --------------------------------------------------------------------------- samples

def load_samples(shards: list[str], sample_ids: list[str], image_size: int,
                 class_names: list[str] | None = None) -> dict:
    """Stacked model inputs of ``sample_ids`` (in that order), their ``label`` codes into
    ``class_names`` (default: the shards'; -1: not one of them) and ``truth`` (their label
    names)."""
    index = read_shard_index(shards)
    known = set(index.sample_id.tolist())
    unknown = [s for s in sample_ids if s not in known]
    if unknown:
        raise Fer3dError(f"samples not in the shards {', '.join(shards)}: "
                         f"{unknown_names(unknown, known)}")
    rows = index.rows_of(sample_ids)
    truth = [index.class_names[int(c)] for c in index.label[rows]]
    ds = ShardDataset(relabel(index, class_names or index.class_names), rows,
                      image_size=image_size)
    try:
        items = [ds[i] for i in range(len(ds))]
    finally:
        ds.close()
    batch = {k: torch.stack([it[k] for it in items]) for k in ("texture", "depth", "mask",
                                                               "label")}
    batch["sample_id"], batch["truth"] = list(sample_ids), truth
    return batch


# --------------------------------------------------------------------------- Grad-CAM

class StackedInputs(nn.Module):
    """One-tensor front of the three-input model, for pytorch-grad-cam.

    Input ``(B, 7, S, S)``: texture (3), depth (3), mask (1) upsampled to S by nearest
    neighbour (the model area-resizes it back to S/4 and S/8 exactly).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @staticmethod
    def stack(batch: dict) -> torch.Tensor:
        size = batch["texture"].shape[-1]
        mask = F.interpolate(batch["mask"], size=(size, size), mode="nearest")
        return torch.cat([batch["texture"], batch["depth"], mask], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x[:, :3], x[:, 3:6], x[:, 6:7])


CAM_CLASSES = ("predicted", "true")


def layer4_side(size: int) -> int:
    """Side of a ResNet18 branch's layer4 map (where the maps are taken) at input ``size``:
    the stem's convolution and max-pool and layer2-4 each halve it, rounding up."""
    for _ in range(5):
        size = (size + 1) // 2
    return size


# Smallest input (a multiple of 4, as every input) whose layer4 map is more than one cell.
MIN_CAM_SIZE = next(s for s in range(8, 1025, 4) if layer4_side(s) > 1)


def flat_maps_warning(size: int) -> str | None:
    """Why Grad-CAM maps at input ``size`` say nothing, or None when they can."""
    if layer4_side(size) > 1:
        return None
    return (f"Grad-CAM at {size} px: layer4 maps are 1x1, so every map is flat (one value); "
            f"use --image-size {MIN_CAM_SIZE} or more ({layer4_side(MIN_CAM_SIZE)}x"
            f"{layer4_side(MIN_CAM_SIZE)} maps; the paper's 224 gives {layer4_side(224)}x"
            f"{layer4_side(224)})")


def branch_cams(model: nn.Module, batch: dict, cam_class: str = "predicted"
                ) -> dict[str, np.ndarray]:
    """Per branch, Grad-CAM ``(B, S, S)`` in [0, 1] at its last block for ``cam_class``."""
    if cam_class not in CAM_CLASSES:
        raise ValueError(f"cam_class must be one of {CAM_CLASSES}, got {cam_class!r}")
    from fer3d_data.clibase import require

    require("pytorch_grad_cam", "cam", "Grad-CAM")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    wrapper = StackedInputs(model).eval()
    x = StackedInputs.stack(batch)
    classes = predict(model, batch) if cam_class == "predicted" else batch["label"].numpy()
    if (classes < 0).any():
        raise Fer3dError(f"{batch['sample_id'][int(np.argmin(classes))]}: its label is not "
                         "a class of the model; no true-class map")
    targets = [ClassifierOutputTarget(int(y)) for y in classes]
    cams = {}
    for name, branch in model.branches.items():
        with GradCAM(model=wrapper, target_layers=[branch.layer4[-1]]) as cam:
            cams[name] = cam(input_tensor=x, targets=targets)
    return cams


@torch.no_grad()
def predict(model: nn.Module, batch: dict) -> np.ndarray:
    return model(batch["texture"], batch["depth"], batch["mask"]).argmax(1).numpy()


def display_images(batch: dict) -> tuple[np.ndarray, np.ndarray]:
    """Texture ``(B, S, S, 3)`` and depth ``(B, S, S)`` in [0, 1], undoing the normalisation."""
    tex = (batch["texture"] * IMAGENET_STD + IMAGENET_MEAN).clamp(0, 1)
    dep = (batch["depth"] * IMAGENET_STD + IMAGENET_MEAN).clamp(0, 1)[:, 0]
    return tex.permute(0, 2, 3, 1).numpy(), dep.numpy()


# --------------------------------------------------------------------------- figures

def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120)


def _overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return show_cam_on_image(rgb.astype(np.float32), cam, use_rgb=True, image_weight=0.5)


def save_cam_montage(models: list[tuple[str, nn.Module]], batch: dict,
                     path: str | os.PathLike, title: str = "", cam_class: str = "predicted",
                     class_names: list[str] | None = None) -> dict:
    """Rows: samples; columns: texture, depth, then each model's branch Grad-CAMs; the
    models predict ``class_names`` (default: the codes as numbers).

    Returns the maps as ``{model label: {branch: (B, S, S)}}``.
    """
    tex, dep = display_images(batch)
    maps = {label: branch_cams(model, batch, cam_class) for label, model in models}
    preds = {label: [class_names[c] if class_names else str(c) for c in predict(model, batch)]
             for label, model in models}
    columns = [("texture", None, None), ("depth", None, None)]
    columns += [(f"{label}\n{branch} Grad-CAM", label, branch)
                for label, _ in models for branch in maps[label]]
    n = len(batch["sample_id"])
    fig = _figure(1.9 * len(columns), 2.0 * n + 0.6)
    for i in range(n):
        truth = batch["truth"][i]
        guesses = ", ".join(f"{label}: {preds[label][i]}" for label, _ in models)
        for j, (head, label, branch) in enumerate(columns):
            ax = fig.add_subplot(n, len(columns), i * len(columns) + j + 1)
            if label is None:
                image = tex[i] if head == "texture" else dep[i]
                ax.imshow(image, cmap=None if head == "texture" else "gray", vmin=0, vmax=1)
            else:
                base = tex[i] if branch == "texture" else dep[i]
                ax.imshow(_overlay(base, maps[label][branch][i]))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(head, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{batch['sample_id'][i]}\ntrue: {truth}", fontsize=7)
            if j == 2:
                ax.set_xlabel(f"predicted: {guesses}", fontsize=6, loc="left")
    fig.suptitle(f"{title or 'Grad-CAM at the last block of each branch'} (red: high; "
                 f"for the {cam_class} class)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return maps


def save_input_cams(model: nn.Module, batch: dict, sample_ids: list[str], class_names,
                    out_dir: str | os.PathLike) -> list[Path]:
    """``out_dir/<sample id>.png`` per sample of ``batch`` (texture, depth, mask): texture,
    depth and each branch's Grad-CAM for the class the model predicts (fer3d-predict --cam)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    maps = branch_cams(model, batch)
    tex, dep = display_images(batch)
    preds = predict(model, batch)
    written = []
    for i, sid in enumerate(sample_ids):
        fig = _figure(1.9 * (2 + len(maps)), 2.3)
        panels = [("texture", tex[i]), ("depth", dep[i])] + [
            (f"{name} Grad-CAM", _overlay(tex[i] if name == "texture" else dep[i], m[i]))
            for name, m in maps.items()]
        for j, (head, image) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), j + 1)
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(head, fontsize=8)
        fig.suptitle(f"{sid}: predicted {class_names[int(preds[i])]}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{sid}.png"
        fig.savefig(path)
        written.append(path)
    return written


@torch.no_grad()
def fusion_weights_by_class(model: nn.Module, batch: dict) -> dict:
    """``{layer: {"texture"|"depth": (C, n_per_class) list of channel-mean weights}}``,
    C the model's classes, samples grouped by their ``label``."""
    model(batch["texture"], batch["depth"], batch["mask"])
    weights = model.fusion_weights()
    if not weights:
        raise Fer3dError("this model has no adaptive fusion: no weights to plot")
    labels = batch["label"].numpy()
    out = {}
    for layer, (w_t, w_d) in weights.items():
        out[layer] = {m: [w.mean(dim=(1, 2, 3)).numpy()[labels == c].tolist()
                          for c in range(model.num_classes)]
                      for m, w in (("texture", w_t), ("depth", w_d))}
    return out


def save_fusion_weights_plot(weights: dict, path: str | os.PathLike, title: str,
                             class_names: list[str]) -> None:
    """Grouped bars per class: mean (± std over samples) texture and depth weight."""
    layers = list(weights)
    fig = _figure(max(5.0, 0.8 * len(class_names)) * len(layers), 3.8)
    x = np.arange(len(class_names))
    for k, layer in enumerate(layers):
        ax = fig.add_subplot(1, len(layers), k + 1)
        for shift, modality in ((-0.2, "texture"), (0.2, "depth")):
            groups = weights[layer][modality]
            means = [np.mean(g) if g else np.nan for g in groups]
            stds = [np.std(g) if g else 0.0 for g in groups]
            ax.bar(x + shift, means, width=0.4, yerr=stds, capsize=3, label=modality)
        ax.set_xticks(x, class_names, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("fusion weight (mean over channels)")
        ax.set_title(f"after {layer}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def fold_sample_ids(checkpoint: Path) -> list[str] | None:
    """The test samples of the cell a checkpoint belongs to (its fold.json), if known."""
    key = parse_cell_name(checkpoint.parent.name)
    cell = CellDir(checkpoint.parent, *key) if key else None
    return [str(s) for s in cell.read_record()["sample_ids"]] if cell and cell.done else None


def one_per_class(sample_ids: list[str], labels: list[int], n: int) -> list[str]:
    """Up to ``n`` samples, taking the classes in turn (first sample of each first)."""
    queues = [[s for s, y in zip(sample_ids, labels) if y == c] for c in sorted(set(labels))]
    chosen = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop(0))
    return chosen


def model_label(meta: dict) -> str:
    known = VARIANT_BY_NAME.get(meta["variant"])
    return known.label if known else meta["variant"]


def _common_classes(loaded: list, shard_names) -> list[str]:
    """The class names every loaded model predicts; Fer3dError when two differ."""
    names = [class_names_of(meta, shard_names) for _, meta in loaded]
    for (_, meta), other in zip(loaded[1:], names[1:]):
        if other != names[0]:
            raise Fer3dError(f"{meta['path']}: classes {other} differ from "
                             f"{loaded[0][1]['path']}'s {names[0]}; compare models of one "
                             "label set")
    return names[0]


def make_figures(checkpoints: list[str | os.PathLike], shards: list[str], samples: list[str],
                 out: str | os.PathLike, *, fusion_out: str | os.PathLike | None = None,
                 image_size: int | None = None, title: str = "", cam_class: str = "predicted"
                 ) -> list[Path]:
    """Grad-CAM montage of ``samples`` for each checkpoint side by side; with ``fusion_out``,
    the first adaptive-fusion model's weights per class on its test fold. The models must
    predict the same classes."""
    loaded = [load_model(c) for c in checkpoints]
    size = image_size or int(loaded[0][1].get("image_size", 224))
    flat = flat_maps_warning(size)
    if flat:
        log.warning("%s", flat)
        title = f"{title or 'Grad-CAM'}; FLAT MAPS: layer4 is 1x1 at {size} px"
    names = _common_classes(loaded, read_shard_index(shards).class_names)
    batch = load_samples(shards, samples, size, names)
    save_cam_montage([(model_label(meta), m) for m, meta in loaded], batch, out, title,
                     cam_class, names)
    written = [Path(out)]
    if fusion_out is not None:
        from fer3d.models import AdaptiveFusion

        model, meta = next(((m, meta) for m, meta in loaded if any(
            isinstance(b, AdaptiveFusion) for b in m.fusions.values())), (None, None))
        if model is None:
            raise Fer3dError("fusion weights: no checkpoint of a model with adaptive fusion")
        fold = fold_sample_ids(Path(meta["path"]))
        ids = fold or samples
        weights = fusion_weights_by_class(model, load_samples(shards, ids, size, names))
        where = "its test fold" if fold else "the given samples"
        save_fusion_weights_plot(weights, fusion_out, f"Adaptive-fusion weights per class: "
                                 f"{model_label(meta)}, {len(ids)} samples of {where} "
                                 "(bars: std over samples)", names)
        written.append(Path(fusion_out))
    return written


def fig6_from_runs(runs: list, shards: list[str], out: Path, dataset: str, n_samples: int
                   ) -> list[Path]:
    """Fig. 6 of a reproduction: the runs' first cells, samples of that cell's test fold."""
    out.mkdir(parents=True, exist_ok=True)
    cell = runs[0].cells[0]
    samples = one_per_class(cell["sample_ids"], cell["labels"], n_samples)
    cells = [RunDir(r.path).cell(cell["repeat"], cell["fold"]).path for r in runs]
    name = DATASET_TITLES.get(dataset, dataset)
    return make_figures(cells, shards, samples,
                        out / f"fig6-gradcam-{dataset}.png",
                        fusion_out=out / f"fig6-fusion-weights-{dataset}.png",
                        image_size=int(runs[0].config.get("image_size", 224)),
                        title=f"Fig. 6: Grad-CAM at each branch's last block, {name}, test fold "
                              f"r{cell['repeat']} f{cell['fold']}")
