"""Export a model for use outside fer3d: ONNX (any runtime) or a torch.export program.

Stage: trained weights -> a portable file (``fer3d-export``). Every member runs in one
graph (:class:`Members`) that takes the three named inputs of
:func:`fer3d.train.contract.model_inputs` with a dynamic batch and returns the members'
logits ``(N, members, classes)``; prediction averages their softmaxes. The model card
travels inside: ONNX metadata (key :data:`fer3d.predict.onnxrt.CARD_KEY`) or the
``model_card.json`` extra file of a ``.pt2`` archive. ONNX needs ``fer3d[onnx]``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer3d.campaign.atomic import atomic_write
from fer3d.errors import CheckpointError, ConfigError
from fer3d.predict.onnxrt import CARD_KEY
from fer3d.train.contract import INPUT_NAMES

OPSET = 18  # >= 17 (LayerNormalization, ...); 18 is what torch's exporter writes natively
PT2_CARD = "model_card.json"
EXPORT_BATCH = 2  # example batch: 0 and 1 are specialised by torch.export, 2 stays symbolic
SUFFIXES = (".onnx", ".pt2")


class Members(nn.Module):
    """Every member's logits for one batch: (N, members, classes)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(models)

    def forward(self, texture: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor):
        return torch.stack([m(texture, depth, mask) for m in self.members], dim=1)


def example_inputs(image_size: int, batch: int = EXPORT_BATCH) -> tuple[torch.Tensor, ...]:
    """Random inputs of the model's shapes (what tracing and the checks run on)."""
    gen = torch.Generator().manual_seed(0)
    s = image_size
    return (torch.randn(batch, 3, s, s, generator=gen), torch.randn(batch, 3, s, s, generator=gen),
            torch.rand(batch, 1, s // 4, s // 4, generator=gen))


def exported_program(module: Members, image_size: int) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=4096)
    return torch.export.export(module.eval(), example_inputs(image_size),
                               dynamic_shapes={k: {0: batch} for k in INPUT_NAMES})


def _write_onnx(program, card: dict, out: str, opset: int) -> None:
    from fer3d_data.clibase import require

    require("onnxscript", "onnx", "ONNX export")
    import onnx

    for name in ("onnx_ir", "onnxscript"):  # their graph passes log every rewrite at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its stages
        onnx_program = torch.onnx.export(program, input_names=list(INPUT_NAMES),
                                         output_names=["logits"], opset_version=opset,
                                         dynamo=True, verbose=False)
    onnx_program.save(out)
    model = onnx.load(out)
    onnx.helper.set_model_props(model, {CARD_KEY: json.dumps(card)})
    onnx.save(model, out)


def _write_pt2(program, card: dict, out: str) -> None:
    with open(out, "wb") as fh:  # a file object: torch.export wants a .pt2 name otherwise
        torch.export.save(program, fh, extra_files={PT2_CARD: json.dumps(card)})


def export_model(model, out: str | os.PathLike, *, opset: int = OPSET) -> Path:
    """Write ``model`` (a :class:`~fer3d.predict.predictor.Predictor` with PyTorch members)
    to ``out``: ``.onnx`` or ``.pt2``, the card inside."""
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise ConfigError(f"{out}: export to a .onnx or .pt2 file")
    if getattr(model.members, "backend", None) != "torch":
        raise ConfigError("export needs PyTorch weights (a final model, run, cell or weights "
                          "file), not an exported file")
    if opset < 17:
        raise ConfigError(f"--opset {opset}: fer3d exports need opset 17 or later")
    # NCHW copies: channels-last weights (how the predictor runs them) would be stored as
    # strided views of other storage (torch.export.save warns, the file keeps the strides)
    module = Members([copy.deepcopy(m).cpu().to(memory_format=torch.contiguous_format)
                      for m in model.members.models])
    program = exported_program(module, model.image_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".onnx":
        atomic_write(out, lambda tmp: _write_onnx(program, model.card, tmp, opset))
    else:
        atomic_write(out, lambda tmp: _write_pt2(program, model.card, tmp))
    return out


class ProgramMembers:
    """A ``.pt2`` file of :func:`export_model`; :meth:`logits` gives (N, members, classes)."""

    backend = "torch.export"

    def __init__(self, path: str | os.PathLike, device: str = "auto"):
        from fer3d.train.runtime import resolve_device

        extra = {PT2_CARD: ""}
        try:
            program = torch.export.load(os.fspath(path), extra_files=extra)
            self.card = json.loads(extra[PT2_CARD])
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise CheckpointError(f"{path}: not a fer3d torch.export file ({exc})") from None
        self.device = resolve_device(device)
        self.module = program.module().to(self.device)

    @torch.no_grad()
    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = [torch.from_numpy(np.ascontiguousarray(inputs[k])).to(self.device)
             for k in INPUT_NAMES]
        return self.module(*x).float().cpu().numpy()


AGREEMENT = 1e-3  # largest |logit difference| accepted between the file and PyTorch


def check_export(model, out: str | os.PathLike) -> float:
    """Run the written file (onnxruntime, or the loaded ``.pt2``) and the PyTorch members on
    the same inputs; the largest logit difference, CheckpointError above AGREEMENT."""
    from fer3d.predict.onnxrt import OnnxMembers

    x = example_inputs(model.image_size, batch=3)  # not the traced batch: dynamic for real
    inputs = {k: t.numpy() for k, t in zip(INPUT_NAMES, x)}
    mine = model.members.logits(inputs)
    runner = OnnxMembers(out, "cpu") if Path(out).suffix == ".onnx" else ProgramMembers(out, "cpu")
    gap = float(np.abs(runner.logits(inputs) - mine).max())
    if not gap <= AGREEMENT:
        raise CheckpointError(f"{out}: its logits differ from PyTorch's by {gap:.2e} "
                              f"(> {AGREEMENT:g}); the export is wrong")
    return gap
