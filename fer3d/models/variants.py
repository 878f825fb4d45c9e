"""Named AFNet-M variants (the paper's Tables 1-4, Figs. 5-6, and extras) and the registry.

Stage: training. Each builder is a thin function of the keyword-only arguments
``num_classes, pretrained, head_init`` whose docstring's first line is its one-line
description in the registry; which paper row it reproduces lives in :mod:`fer3d.paper.catalog`
(torch-free) and is returned by :func:`paper_tag`; ``create_model(name)`` is what the
training engine and the CLI call. :func:`param_size_mib` measures a model in the paper's
Table 4 unit (docs/model.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from fer3d.models.afnet_m import LAYERS, AFNetM, load_resnet18_weights
from fer3d.paper.catalog import VARIANT_BY_NAME

_MODEL_BUILDERS: dict[str, Callable[..., AFNetM]] = {}


def register_model(fn: Callable[..., AFNetM]) -> Callable[..., AFNetM]:
    """Decorator: register a builder under its function name; its docstring's first line
    is the description shown by :func:`describe_models`. The name must be in
    :data:`fer3d.paper.catalog.VARIANT_NAMES`, where its paper row is recorded."""
    if not (fn.__doc__ or "").strip():
        raise ValueError(f"model builder {fn.__name__} needs a one-line docstring")
    if fn.__name__ in _MODEL_BUILDERS:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    if fn.__name__ not in VARIANT_BY_NAME:
        raise ValueError(f"model {fn.__name__!r} is not in fer3d.paper.catalog.VARIANTS")
    _MODEL_BUILDERS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Registered model names, in the order of the paper's tables, extras last."""
    return [name for name in VARIANT_BY_NAME if name in _MODEL_BUILDERS]


def describe_models() -> dict[str, str]:
    """Registered model name -> one-line description."""
    return {name: _MODEL_BUILDERS[name].__doc__.strip().splitlines()[0] for name in list_models()}


def paper_tag(name: str) -> str:
    """Which table or figure row ``name`` reproduces ("" for an extra not in the paper)."""
    if name not in _MODEL_BUILDERS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return VARIANT_BY_NAME[name].paper


def create_model(
    name: str,
    *,
    num_classes: int = 6,
    pretrained: Mapping[str, torch.Tensor] | None = None,
    head_init: str = "normal",
) -> AFNetM:
    """Build a registered model; ``pretrained`` a resnet18 state dict loaded into every
    branch by :func:`load_resnet18_weights` (or None);
    ``head_init`` "normal" (the paper's) or "identity" for the MA/AF convolutions.

    >>> create_model("afnet_m", num_classes=6).num_features
    512
    """
    if name not in _MODEL_BUILDERS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODEL_BUILDERS[name](num_classes=num_classes, pretrained=pretrained,
                                 head_init=head_init)


def _build(pretrained: Mapping[str, torch.Tensor] | None, **config) -> AFNetM:
    model = AFNetM(**config)
    return model if pretrained is None else load_resnet18_weights(model, pretrained)


def _single(modality: str, mask_attention: bool, **kw) -> AFNetM:
    return _build(fusion="none", modalities=(modality,), mask_attention=mask_attention, **kw)


# ---- Table 3: single modalities, with and without mask attention

@register_model
def texture_only(**kw) -> AFNetM:
    """Texture ResNet18 alone, no mask attention (Table 3: 2D)."""
    return _single("texture", False, **kw)


@register_model
def texture_only_ma(**kw) -> AFNetM:
    """Texture ResNet18 alone with mask attention after layer1 and layer2 (Table 3: 2D + MA)."""
    return _single("texture", True, **kw)


@register_model
def depth_only(**kw) -> AFNetM:
    """Depth ResNet18 alone, no mask attention (Table 3: 3D)."""
    return _single("depth", False, **kw)


@register_model
def depth_only_ma(**kw) -> AFNetM:
    """Depth ResNet18 alone with mask attention after layer1 and layer2 (Table 3: 3D + MA)."""
    return _single("depth", True, **kw)


# ---- Table 2: fusion strategies, as the paper evaluates them: without mask attention

@register_model
def fusion_s1_data(**kw) -> AFNetM:
    """S1 data-level fusion: one ResNet18 over the 6-channel [texture, depth] stack (Table 2)."""
    return _build(fusion="data", mask_attention=False, **kw)


@register_model
def fusion_s2_decision(**kw) -> AFNetM:
    """S2 decision-level fusion: two ResNet18 classifiers, probabilities averaged (Table 2)."""
    return _build(fusion="decision", mask_attention=False, **kw)


@register_model
def fusion_s3_fc(**kw) -> AFNetM:
    """S3 FC-level fusion: pooled features of two ResNet18 concatenated -> fc (Table 2)."""
    return _build(fusion="fc", mask_attention=False, **kw)


@register_model
def fusion_s4_sum(**kw) -> AFNetM:
    """S4 conv-level fusion without weights: M = X_t + X_d after layer3, layer4 (Table 2)."""
    return _build(fusion="sum", mask_attention=False, **kw)


@register_model
def afnet_m_no_ma(**kw) -> AFNetM:
    """Adaptive fusion after layer3 and layer4, no mask attention (Tables 2-4, Figs. 5, 6)."""
    return _build(mask_attention=False, **kw)


@register_model
def afnet_m(**kw) -> AFNetM:
    """AFNet-M: MA after layer1/layer2 in each branch, adaptive fusion after layer3 and layer4."""
    return _build(**kw)


# ---- Fig. 5: fusion positions, AF without mask attention (layer34 is afnet_m_no_ma)

@register_model
def afnet_m_no_ma_layer1234(**kw) -> AFNetM:
    """Adaptive fusion after layer1, 2, 3 and 4, no mask attention (Fig. 5)."""
    return _build(fusion_layers=LAYERS, mask_attention=False, **kw)


@register_model
def afnet_m_no_ma_layer234(**kw) -> AFNetM:
    """Adaptive fusion after layer2, 3 and 4, no mask attention (Fig. 5)."""
    return _build(fusion_layers=LAYERS[1:], mask_attention=False, **kw)


@register_model
def afnet_m_no_ma_layer4(**kw) -> AFNetM:
    """Adaptive fusion after layer4 only, no mask attention (Fig. 5)."""
    return _build(fusion_layers=LAYERS[3:], mask_attention=False, **kw)


# ---- Table 4: AFNet-M without AF (sum fusion, mask attention kept)

@register_model
def fusion_s4_sum_ma(**kw) -> AFNetM:
    """AFNet-M with M = X_t + X_d instead of AF, mask attention kept (Table 4: without AF)."""
    return _build(fusion="sum", **kw)


# ---- Extras, not in the paper: fusion strategies and positions with mask attention

@register_model
def fusion_s1_data_ma(**kw) -> AFNetM:
    """Extra: S1 data-level fusion with mask attention after layer1 and layer2."""
    return _build(fusion="data", **kw)


@register_model
def fusion_s2_decision_ma(**kw) -> AFNetM:
    """Extra: S2 decision-level fusion with mask attention in each branch."""
    return _build(fusion="decision", **kw)


@register_model
def fusion_s3_fc_ma(**kw) -> AFNetM:
    """Extra: S3 FC-level fusion with mask attention in each branch."""
    return _build(fusion="fc", **kw)


@register_model
def afnet_m_layer1234(**kw) -> AFNetM:
    """Extra: AFNet-M with adaptive fusion after layer1, 2, 3 and 4."""
    return _build(fusion_layers=LAYERS, **kw)


@register_model
def afnet_m_layer234(**kw) -> AFNetM:
    """Extra: AFNet-M with adaptive fusion after layer2, 3 and 4."""
    return _build(fusion_layers=LAYERS[1:], **kw)


@register_model
def afnet_m_layer4(**kw) -> AFNetM:
    """Extra: AFNet-M with adaptive fusion after layer4 only."""
    return _build(fusion_layers=LAYERS[3:], **kw)


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (each shared module counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_size_mib(model: nn.Module, *inputs: torch.Tensor) -> float:
    """Model size in the paper's Table 4 unit: torchsummary's "Params size (MB)".

    torchsummary hooks every module, adds the parameters of each module per call, and
    reports ``count * 4 bytes / 2**20``. A module called twice (AF's conv shared by the
    avg- and max-pooled descriptors) is counted twice; that is how Table 4 adds up.
    ``inputs`` are one forward pass's arguments (any batch and size); the model is run
    in eval mode, so its BatchNorm statistics are unchanged.
    """
    calls: list[int] = []

    def hook(module: nn.Module, args, output) -> None:
        calls.append(sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()  # keep BatchNorm running statistics untouched
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return sum(calls) * 4 / 2**20
