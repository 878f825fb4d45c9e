"""An exported model run by ONNX Runtime, without PyTorch.

Stage: model inputs -> logits (onnxruntime, torch-free). A file written by
``fer3d-export -o model.onnx`` (:mod:`fer3d.predict.export`) takes the three named inputs
of :func:`fer3d.train.contract.model_inputs` with a dynamic batch and returns every
member's logits ``(N, members, classes)``; its model card travels in the file's metadata
(key :data:`CARD_KEY`), so prediction needs nothing else.
"""

from __future__ import annotations

import json
import os

import numpy as np

from fer3d.errors import CheckpointError
from fer3d.train.contract import INPUT_NAMES
from fer3d_data.clibase import require

CARD_KEY = "fer3d_model_card"


class OnnxMembers:
    """An exported ``.onnx`` file; :meth:`logits` gives (N, members, classes). ``threads``:
    onnxruntime's intra-op threads (None: its default)."""

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, device: str = "auto",
                 threads: int | None = None):
        require("onnxruntime", "onnx", "predicting with an .onnx file")
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        if threads:  # None: onnxruntime's default, one thread per core
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: not a loadable ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if CARD_KEY not in meta:
            raise CheckpointError(f"{path}: an ONNX file without a fer3d model card (export "
                                  "it with fer3d-export)")
        self.card = json.loads(meta[CARD_KEY])

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """(N, members, classes) float32 logits of one batch of model inputs."""
        feed = {k: np.ascontiguousarray(inputs[k], dtype=np.float32) for k in INPUT_NAMES}
        return self.session.run(None, feed)[0]
