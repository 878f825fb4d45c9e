"""K models of one architecture trained as one network grouped K ways ("packed cells").

Stage: training. AFNet-M at batch 32 issues ~800 small kernels per step, too few
operations each to fill a large GPU. :func:`pack_models` turns K models of one variant into
one network whose every convolution is grouped K ways (``groups=K``, as Packed-Ensembles'
``PackedConv2d``), every batch norm has K times the channels (its statistics stay per
channel, so per cell), and every linear layer is a grouped product (:class:`PackedLinear`):
the same number of kernels, each doing K cells' work. Feature maps hold the K cells'
channels cell-major, ``(B, K*C, H, W)``; sample b of cell k sits in batch row b, so each
cell sees its own batch; the few channel-structural steps of AFNet-M (mask expansion,
concatenations) follow ``groups`` (:mod:`fer3d.models.afnet_m`).

Every packed tensor is its K models' tensors concatenated along the first dimension (a
0-dimensional buffer, BatchNorm's step count, is shared: it is equal in cells stepped
together), so :func:`pack_state` and :func:`unpack_state` convert state dicts and the same
rule serves elementwise optimizer state (Adam's moments, :func:`unpack_optimizer_state`).

Why grouped convolutions and not ``torch.func.stack_module_state`` + ``vmap`` (both tried
on AFNet-M, K = 4, 64 px): vmap's batching rules dispatched 3,353 operators per training
step against 816 for one model (copies, clones and decomposed batch norms, plus a per-model
fallback loop for ``adaptive_avg_pool2d``), i.e. about twice the kernel launches that
packing is meant to save; the grouped network dispatches as many operators as one model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fer3d.models.afnet_m import Grouped


class PackedLinear(nn.Module):
    """K linear layers ``in -> out`` as one: ``(B, K*in) -> (B, K*out)``, cell-major.

    ``weight`` is ``(K*out, in)`` and ``bias`` ``(K*out,)``: the K layers' tensors stacked,
    as every packed tensor (:func:`pack_state`).
    """

    def __init__(self, groups: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.groups, self.in_features, self.out_features = groups, in_features, out_features
        self.weight = nn.Parameter(torch.empty(groups * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(groups * out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.groups
        w = self.weight.view(k, self.out_features, self.in_features)
        y = torch.bmm(x.view(x.shape[0], k, self.in_features).transpose(0, 1),
                      w.transpose(1, 2)).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias.view(k, self.out_features)
        return y.reshape(x.shape[0], k * self.out_features)


def _packed_module(module: nn.Module, k: int) -> nn.Module | None:
    """The K-way packed twin of a parametrised leaf (uninitialised), or None for others."""
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(k * module.in_channels, k * module.out_channels, module.kernel_size,
                         module.stride, module.padding, module.dilation, k * module.groups,
                         module.bias is not None, module.padding_mode)
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(k * module.num_features, module.eps, module.momentum,
                              module.affine, module.track_running_stats)
    if isinstance(module, nn.Linear):
        return PackedLinear(k, module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, (nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm, nn.Embedding)):
        raise TypeError(f"cannot pack a {type(module).__name__} (not used by fer3d's models)")
    return None


def packed_twin(model: nn.Module, k: int) -> nn.Module:
    """An uninitialised network of ``model``'s architecture grouped ``k`` ways (on the meta
    device: load a :func:`pack_state` into it with ``load_state_dict(..., assign=True)``)."""
    with torch.device("meta"):
        twin = copy.deepcopy(model).to("meta")
        for name, module in list(twin.named_modules()):
            packed = _packed_module(module, k) if k > 1 else None
            if packed is not None:
                parent, _, leaf = name.rpartition(".")
                setattr(twin.get_submodule(parent) if parent else twin, leaf, packed)
    for module in twin.modules():
        if isinstance(module, Grouped):
            module.groups = k
    return twin


def pack_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """K state dicts of one architecture -> the packed network's (tensors concatenated along
    dim 0; 0-d tensors, equal in all, taken from the first)."""
    return {name: (torch.cat([s[name] for s in states]) if v.ndim else v.clone())
            for name, v in states[0].items()}


def unpack_state(state: dict[str, torch.Tensor], k: int) -> list[dict[str, torch.Tensor]]:
    """The inverse of :func:`pack_state`: K state dicts (views of ``state``'s tensors)."""
    parts = {name: (v.chunk(k) if v.ndim else [v] * k) for name, v in state.items()}
    return [{name: chunks[i] for name, chunks in parts.items()} for i in range(k)]


def pack_models(states: list[dict[str, torch.Tensor]], template: nn.Module,
                device: torch.device | str = "cpu") -> nn.Module:
    """One network trained as the ``len(states)`` models of ``template``'s architecture whose
    state dicts are ``states``; ``groups`` is set on every module that has it."""
    net = packed_twin(template, len(states))
    net.load_state_dict({n: v.to(device) for n, v in pack_state(states).items()}, assign=True)
    return net.to(device)


def unpack_optimizer_state(state: dict, k: int) -> list[dict]:
    """A packed network's optimizer state dict -> the K cells' (elementwise state such as
    Adam's moments is split like the weights; step counts are shared)."""
    per_param = {i: unpack_state(s, k) for i, s in state["state"].items()}
    return [{"state": {i: parts[c] for i, parts in per_param.items()},
             "param_groups": copy.deepcopy(state["param_groups"])} for c in range(k)]


def pack_optimizer_state(states: list[dict]) -> dict:
    """K cells' optimizer state dicts (same optimizer, same step) -> the packed network's."""
    per_param = {i: pack_state([s["state"][i] for s in states]) for i in states[0]["state"]}
    return {"state": per_param, "param_groups": copy.deepcopy(states[0]["param_groups"])}


def cell_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    """A packed network's ``(B, K*n)`` logits -> ``(K, B, n)``."""
    return logits.unflatten(1, (k, -1)).transpose(0, 1)


def to_cells_layout(x: torch.Tensor, k: int) -> torch.Tensor:
    """K cells' batches stacked cell-major ``(K*B, C, ...)`` -> the packed network's input
    ``(B, K*C, ...)`` (a view for K = 1)."""
    return x.unflatten(0, (k, -1)).transpose(0, 1).flatten(1, 2)
