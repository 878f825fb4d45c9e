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

# Variables a scheduler sets when it gives this job GPUs (NVIDIA_VISIBLE_DEVICES is left out:
# container images set it to "all" on machines without a GPU too).
GPU_ALLOCATION_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS",
                       "SLURM_GPUS_ON_NODE")
NO_GPU_VALUES = ("", "-1", "none", "void", "nodevfiles")
# The oldest Linux driver of each CUDA major version (minor-version compatibility).
MIN_DRIVER = {"11": "450.80", "12": "525.60", "13": "580.65"}


def local_slot(env=None) -> tuple[int, int]:
    """(this process's index among the processes of its node, their count; 0: unknown):
    torchrun's LOCAL_RANK of LOCAL_WORLD_SIZE, else srun's SLURM_LOCALID of the step's
    tasks on this node, else (0, 1)."""
    env = os.environ if env is None else env
    if "LOCAL_RANK" in env:
        return int(env["LOCAL_RANK"]), int(env.get("LOCAL_WORLD_SIZE", 0))
    if "SLURM_LOCALID" in env and "SLURM_STEP_TASKS_PER_NODE" in env:
        # "8" or "8(x2)" or "4,2": the first node's count is this node's in the usual layouts
        per_node = env["SLURM_STEP_TASKS_PER_NODE"].split("(")[0].split(",")[0]
        return int(env["SLURM_LOCALID"]), max(1, int(per_node or 1))
    return 0, 1


def gpu_index(slot: int, peers: int, gpus: int, worker: int = 0) -> int:
    """The GPU of worker ``worker`` of the process at ``slot`` of ``peers`` on a node with
    ``gpus`` visible GPUs: the process owns GPUs ``slot, slot + peers, ...`` (all of them when
    alone; one when every process sees only its own) and its workers take them in turn;
    with ``peers`` unknown (0), GPU ``slot`` alone."""
    owned = [g for g in range(gpus) if peers and g % peers == slot % peers] or [slot % gpus]
    return owned[worker % len(owned)]


def gpus_allocated(env=None) -> str | None:
    """``NAME=value`` of the first variable saying a scheduler gave this job GPUs, or None."""
    env = os.environ if env is None else env
    for name in GPU_ALLOCATION_VARS:
        value = env.get(name)
        if value is None or value.strip().lower() in NO_GPU_VALUES:
            continue
        if name != "SLURM_GPUS_ON_NODE" or value.strip() != "0":  # a count there, not an index
            return f"{name}={value}"
    return None


def _cuda_problem() -> str:
    """Why torch cannot use CUDA here, and which driver this torch build needs."""
    try:
        torch.cuda.init()
        reason = "no CUDA device"
    except Exception as exc:  # noqa: BLE001 (any failure of the probe is the reason)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    built = torch.version.cuda
    if not built:
        return f"{reason}; torch {torch.__version__} is a CPU-only build: install a CUDA build"
    driver = MIN_DRIVER.get(built.split(".")[0])
    need = f" (Linux driver >= {driver})" if driver else ""
    return (f"{reason}; torch {torch.__version__} is built for CUDA {built} and needs an "
            f"NVIDIA driver supporting CUDA {built}{need}: check `nvidia-smi`")


def resolve_device(name: str = "auto", *, worker: int = 0, env=None) -> torch.device:
    """auto -> cuda if torch can use it, else cpu, unless the scheduler allocated GPUs that
    torch cannot use (a ConfigError: a CPU cell takes hours). ``cuda`` is this process's GPU
    (:func:`local_slot`, :func:`gpu_index`; ``worker`` is a --parallel-cells worker);
    ``cuda:N`` that GPU. An explicit cuda without a usable GPU is an error."""
    env = os.environ if env is None else env
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif gpus_allocated(env):
            raise ConfigError(f"--device auto: GPUs are allocated ({gpus_allocated(env)}) but "
                              f"torch cannot use CUDA: {_cuda_problem()}; or pass --device cpu")
        else:
            return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked but torch cannot use CUDA: {_cuda_problem()}")
    if name == "cuda":
        return torch.device("cuda", gpu_index(*local_slot(env), torch.cuda.device_count(),
                                              worker))
    if name != "cpu" and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
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
    bfloat16, float16 or off), for the run-time list of differences from the paper; where
    this machine has no usable GPU for ``device`` (a Ray head, a login node), what the
    workers will resolve."""
    try:
        return resolve_amp(amp, resolve_device(device)).name
    except ConfigError:
        return f"{amp} (set on each worker)"


def configure(device: torch.device) -> None:
    """Per-process backend settings: this process's GPU as the current one (CUDA contexts,
    caches and un-indexed allocations land there, not on GPU 0), cuDNN autotuning for the
    fixed training shapes, TF32."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def make_optimizer(params, lr: float) -> torch.optim.Adam:
    """The paper's Adam with fused kernels: one launch per step on CUDA, its step counts on
    the device (no host read in a step), and 3-5x foreach's speed on the CPU (AFNet-M's
    23 M parameters: 0.09 vs 0.28-0.45 s per step on a 2-core EPYC)."""
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), fused=True)


def versions(device: torch.device | None) -> dict[str, str]:
    """Package and library versions recorded in config.json (``device`` None: the devices
    are set up by worker processes)."""
    from importlib import metadata

    import h5py
    import torchvision

    try:
        fer3d_version = metadata.version("fer3d")
    except metadata.PackageNotFoundError:
        fer3d_version = getattr(sys.modules.get("fer3d"), "__version__", "unknown")
    if device is None:
        where = "set up by each worker"
    else:
        dev = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else platform.processor())
        where = f"{device.type}: {dev or platform.machine()}"
    return {"fer3d": str(fer3d_version), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "h5py": h5py.__version__, "python": platform.python_version(),
            "device": where,
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


def rng_state(device: torch.device) -> dict:
    """Global RNG states as tensors and plain types (loadable with weights_only=True); of
    the GPUs only ``device``'s, so that a checkpoint resumes on a machine with fewer GPUs."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "python": [random.getstate()[0], list(random.getstate()[1]),
                        random.getstate()[2]]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore :func:`rng_state`; the GPU state goes to ``device``. Older checkpoints hold
    one state per GPU of the machine that wrote them: ``device``'s index is taken from
    that list (the first when the list is shorter)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    cuda = state.get("cuda")
    if cuda is not None and device.type == "cuda":
        if isinstance(cuda, (list, tuple)):
            i = device.index or 0
            cuda = cuda[i] if i < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda, device)
