"""A model's members in PyTorch: logits of every member for a batch of model inputs.

Stage: model inputs -> logits (PyTorch). The weights come from the one loader
(:func:`fer3d.train.checkpoint.load_models`); inputs are the float32 arrays of
:func:`fer3d.train.contract.model_inputs`, run in fp32 and channels-last (as in training)
on ``--device`` in batches of ``--batch-size``. :meth:`TorchMembers.cams` writes
per-branch Grad-CAM figures with :mod:`fer3d.paper.cam`'s code (the first member's).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fer3d.train.contract import INPUT_NAMES
from fer3d.train.runtime import resolve_device
from fer3d.train.step import place_model


class TorchMembers:
    """``models`` (eval mode) on ``device``; :meth:`logits` gives (N, members, classes)."""

    backend = "torch"

    def __init__(self, models: list[torch.nn.Module], device: str = "auto"):
        self.device = resolve_device(device)
        # channels-last: oneDNN's and cuDNN's fast layout, as in training
        self.models = [place_model(m, self.device, channels_last=True).eval() for m in models]

    def _tensors(self, inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(inputs[k])).to(self.device).contiguous(
            memory_format=torch.channels_last) for k in INPUT_NAMES]

    @torch.no_grad()
    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """(N, members, classes) float32 logits of one batch of model inputs."""
        x = self._tensors(inputs)
        out = torch.stack([m(*x).float() for m in self.models], dim=1)
        return out.cpu().numpy()

    def cams(self, inputs: dict[str, np.ndarray], sample_ids: list[str], class_names,
             out_dir: str | os.PathLike) -> list[Path]:
        """``out_dir/<sample id>.png`` per input: texture, depth and each branch's Grad-CAM
        for the predicted class (the first member's, on the CPU)."""
        from fer3d.paper.cam import save_input_cams

        model = self.models[0].cpu()
        try:
            batch = dict(zip(INPUT_NAMES, (t.cpu() for t in self._tensors(inputs))))
            return save_input_cams(model, batch, sample_ids, class_names, out_dir)
        finally:
            model.to(self.device)
