"""No host-device transfer or sync inside a training step, seen without CUDA.

A guard (a TorchFunctionMode over a TorchDispatchMode) is active around every step of an
epoch, the batch's making included. It records each operation that waits for the device or
moves data between host and device on a GPU: reading a value (``aten._local_scalar_dense``:
``item``, ``bool``, ``float``, ``tolist``), a copy to another device (``aten._to_copy`` /
``copy_`` across devices, ``.cpu()``, ``.cuda()``, ``.numpy()``, ``.to(device)``), a tensor
made from Python data (``torch.tensor(list)``: ``aten.lift_fresh``, a host-to-device copy
on CUDA) and an operation whose output size depends on the data (``nonzero``,
``masked_select``, ``unique``: the host waits for the count). On the CPU these run as on a
GPU, so the guard sees them here; the checks at the ends of the file show it does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from fer3d.train import step as engine
from fer3d.train.runtime import AmpMode, make_optimizer
from fer3d.train.sources import DeviceData, make_source, pack_batches
from fer3d_data.shard_index import read_shard_index

HOST_READS = {"aten._local_scalar_dense", "aten.lift_fresh", "aten.lift_fresh_copy",
              "aten.nonzero", "aten.masked_select", "aten.unique_dim", "aten._unique2",
              "aten.unique_consecutive", "aten.repeat_interleave"}
TRANSFER_METHODS = {"cpu", "cuda", "numpy", "tolist", "item", "pin_memory", "__bool__",
                    "__float__", "__int__", "__index__"}


class _Dispatch(TorchDispatchMode):
    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name.replace("::", ".")
        if name in HOST_READS:
            self.seen.append(name)
        elif name in ("aten._to_copy", "aten.copy_"):
            src = args[1] if name == "aten.copy_" else args[0]
            dst = args[0].device if name == "aten.copy_" else kwargs.get("device", src.device)
            if torch.device(dst) != src.device:
                self.seen.append(f"{name} {src.device}->{dst}")
        return func(*args, **kwargs)


class _Function(TorchFunctionMode):
    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in TRANSFER_METHODS or (name == "to" and _names_device(args[1:], kwargs)):
            self.seen.append(f"Tensor.{name}")
        elif func in (torch.tensor, torch.as_tensor, torch.from_numpy):
            self.seen.append(f"torch.{name}")
        return func(*args, **kwargs)


def _names_device(args, kwargs) -> bool:
    return "device" in kwargs or any(isinstance(a, (str, torch.device)) for a in args)


class SyncGuard:
    """Context manager; ``seen`` lists every transfer or sync inside it."""

    def __init__(self):
        self.seen: list[str] = []

    def __enter__(self):
        self._modes = [_Function(self.seen), _Dispatch(self.seen)]
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


def guarded(batches, guard: SyncGuard):
    """``batches`` with the guard active while each batch is made."""
    it = iter(batches)
    while True:
        with guard:
            try:
                batch = next(it)
            except StopIteration:
                return
        yield batch


@pytest.fixture(scope="module")
def setup(bu3dfe_shard):
    index = read_shard_index([bu3dfe_shard])
    rows = np.flatnonzero(index.expression < 6)
    cpu = torch.device("cpu")
    data = DeviceData(index, rows, cpu)
    return index, rows, data, cpu


def _epoch(setup, monkeypatch, cells: int, variant: str = "afnet_m"):
    """One epoch of ``cells`` packed cells with the guard around each step; what it saw."""
    from fer3d.models import create_model
    from fer3d.models.packed import pack_models
    from fer3d.train.transforms import Augment

    index, rows, data, cpu = setup
    srcs = [make_source(index, rows[8 * i:8 * i + 12], image_size=32, batch_size=4,
                        device=cpu, data=data, aug=Augment()) for i in range(cells)]
    models = [create_model(variant) for _ in range(cells)]
    with torch.device("meta"):
        template = create_model(variant)
    model = pack_models([m.state_dict() for m in models], template)
    opt = make_optimizer(model.parameters(), 1e-3)
    guard = SyncGuard()
    real_step = engine.train_step

    def step(*a, **k):
        with guard:
            return real_step(*a, **k)
    monkeypatch.setattr(engine, "train_step", step)
    batches = pack_batches(srcs, list(range(cells)))
    stats, diverged = engine.train_epoch(
        model, guarded(batches, guard), opt, torch.amp.GradScaler("cpu", enabled=False),
        AmpMode(None), cpu, cells=cells, channels_last=True, nan_check_every=1)
    assert len(stats) == cells and not diverged and stats[0]["train_acc"] >= 0
    return guard.seen


@pytest.mark.parametrize("cells", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_no_host_transfer_or_sync_inside_a_training_step(setup, monkeypatch, cells):
    """3 steps of AFNet-M (mask attention, both fusions) with augmentation, fused Adam and
    the per-cell losses; the NaN check after each step is outside the guard."""
    assert _epoch(setup, monkeypatch, cells) == []


def test_the_guard_sees_a_value_read_in_the_step(setup, monkeypatch):
    real = engine.compute_loss

    def reads(logits, labels, cells=1):
        loss = real(logits, labels, cells)
        loss.sum().item()  # what a logging line per step would do
        return loss
    monkeypatch.setattr(engine, "compute_loss", reads)
    assert "aten._local_scalar_dense" in _epoch(setup, monkeypatch, 1, "texture_only")


def test_the_guard_sees_constants_made_per_batch(setup, monkeypatch):
    """The finding this pins: ImageNet statistics built with torch.tensor on every batch."""
    from fer3d.train import transforms

    monkeypatch.setattr(transforms, "imagenet_stats", lambda device: (
        torch.tensor(transforms.IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
        torch.tensor(transforms.IMAGENET_STD, device=device).view(1, 3, 1, 1)))
    seen = _epoch(setup, monkeypatch, 1, "texture_only")
    assert "torch.tensor" in seen and "aten.lift_fresh" in seen


def test_the_guard_sees_transfers_and_data_dependent_shapes():
    x = torch.arange(6.0)
    with SyncGuard() as guard:
        x.cpu()
        x.to("cpu")
        x.nonzero()
        x[x > 2]
        bool(x.sum() > 0)
    assert guard.seen[:2] == ["Tensor.cpu", "Tensor.to"]
    assert {"aten.nonzero", "aten._local_scalar_dense"} <= set(guard.seen)
