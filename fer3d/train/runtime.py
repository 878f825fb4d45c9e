"""The machine a cell trains on: device, mixed precision, seeds, RNG states, versions.

Stage: training runtime. Everything here is probed, never assumed: the same code runs on
an AVX2-only AMD CPU, an AMX Intel CPU and a CUDA GPU, and records which it found.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fer3d.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """auto -> cuda if present, else cpu; ``cuda`` means ``cuda:LOCAL_RANK`` under torchrun
    (one GPU per rank). An explicit cuda without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked but torch sees no CUDA device")
    if name == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local % torch.cuda.device_count())
    if name != "cpu" and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def cpu_bf16_supported() -> bool:
    """True when oneDNN has native bf16 kernels here (AVX512-BF16/AMX) and autocast works.

    On CPUs without them bf16 convolutions are emulated and slower than fp32.
    """
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is None or not probe():
        return False
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = F.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
        return y.dtype == torch.bfloat16
    except RuntimeError:
        return False


@dataclass(frozen=True)
class AmpMode:
    """dtype None: full fp32. scaler: fp16 on CUDA needs loss scaling."""

    dtype: torch.dtype | None
    scaler: bool = False

    @property
    def name(self) -> str:
        return "off" if self.dtype is None else str(self.dtype).removeprefix("torch.")

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.dtype or torch.float32,
                              enabled=self.dtype is not None)


def resolve_amp(amp: str, device: torch.device) -> AmpMode:
    """auto: bf16 on CPUs with native bf16 and on CUDA with bf16 support, fp16 + GradScaler
    on older GPUs, else fp32."""
    if amp == "off":
        return AmpMode(None)
    if amp == "bf16":
        return AmpMode(torch.bfloat16)
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("--amp fp16 needs a CUDA device; use bf16 or off on CPU")
        return AmpMode(torch.float16, scaler=True)
    if amp != "auto":
        raise ConfigError(f"unknown --amp {amp!r}; use auto, off, bf16 or fp16")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return AmpMode(torch.bfloat16)
        return AmpMode(torch.float16, scaler=True)
    return AmpMode(torch.bfloat16) if cpu_bf16_supported() else AmpMode(None)


def resolved_precision(device: str = "auto", amp: str = "auto") -> str:
    """The autocast dtype a process with these settings trains in (:class:`AmpMode` name:
    bfloat16, float16 or off), for the run-time list of differences from the paper."""
    return resolve_amp(amp, resolve_device(device)).name


def configure(device: torch.device) -> None:
    """Per-process backend settings: cuDNN autotuning for the fixed training shapes, TF32."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def make_optimizer(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """The paper's Adam; fused kernels on CUDA (one launch per step), foreach elsewhere."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), **fast)


def versions(device: torch.device) -> dict[str, str]:
    """Package and library versions recorded in config.json."""
    from importlib import metadata

    import h5py
    import torchvision

    try:
        fer3d_version = metadata.version("fer3d")
    except metadata.PackageNotFoundError:
        fer3d_version = getattr(sys.modules.get("fer3d"), "__version__", "unknown")
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"fer3d": str(fer3d_version), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "h5py": h5py.__version__, "python": platform.python_version(),
            "device": f"{device.type}: {dev or platform.machine()}",
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


# --------------------------------------------------------------------------- randomness

def cell_seed(seed: int, repeat: int, fold: int, epoch: int | None = None) -> int:
    """A 31-bit seed drawn from (seed, repeat, fold[, epoch])."""
    words = [seed, repeat, fold] + ([] if epoch is None else [epoch])
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Global RNG states as tensors and plain types (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "python": [random.getstate()[0], list(random.getstate()[1]),
                        random.getstate()[2]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
