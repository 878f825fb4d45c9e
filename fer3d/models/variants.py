"""Named AFNet-M variants (the paper's Tables 2-4 and Fig. 5) and the name registry.

Stage: training. Each builder is a thin, keyword-only function whose docstring's first
line is its one-line description in the registry; ``create_model(name)`` is what the
training engine and the CLI call. :func:`param_size_mib` measures a model in the paper's
Table 4 unit (docs/model.md).
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

from fer3d.models.afnet_m import AFNetM, load_resnet18_weights

_MODEL_BUILDERS: dict[str, Callable[..., AFNetM]] = {}


def register_model(fn: Callable[..., AFNetM]) -> Callable[..., AFNetM]:
    """Decorator: register a builder under its function name; its docstring's first line
    is the description shown by :func:`describe_models`."""
    if not (fn.__doc__ or "").strip():
        raise ValueError(f"model builder {fn.__name__} needs a one-line docstring")
    if fn.__name__ in _MODEL_BUILDERS:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _MODEL_BUILDERS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Registered model names, in the order of the paper's tables."""
    return list(_MODEL_BUILDERS)


def describe_models() -> dict[str, str]:
    """Registered model name -> one-line description."""
    return {name: fn.__doc__.strip().splitlines()[0] for name, fn in _MODEL_BUILDERS.items()}


def create_model(
    name: str, *, num_classes: int = 6, pretrained: str | os.PathLike | None = None
) -> AFNetM:
    """Build a registered model; ``pretrained`` as :func:`load_resnet18_weights` (or None).

    >>> create_model("afnet_m", num_classes=6).num_features
    512
    """
    if name not in _MODEL_BUILDERS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(_MODEL_BUILDERS)}")
    return _MODEL_BUILDERS[name](num_classes=num_classes, pretrained=pretrained)


def _build(pretrained: str | os.PathLike | None, **config) -> AFNetM:
    model = AFNetM(**config)
    return model if pretrained is None else load_resnet18_weights(model, pretrained)


def _single(pretrained, num_classes: int, modality: str, *, mask_attention: bool) -> AFNetM:
    return _build(
        pretrained,
        num_classes=num_classes,
        fusion="none",
        modalities=(modality,),
        mask_attention=mask_attention,
    )


@register_model
def texture_only(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """Texture ResNet18 alone, no mask attention (Table 2: 2D)."""
    return _single(pretrained, num_classes, "texture", mask_attention=False)


@register_model
def texture_only_ma(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """Texture ResNet18 alone with mask attention after layer1 and layer2 (Table 2: 2D + MA)."""
    return _single(pretrained, num_classes, "texture", mask_attention=True)


@register_model
def depth_only(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """Depth ResNet18 alone, no mask attention (Table 2: 3D)."""
    return _single(pretrained, num_classes, "depth", mask_attention=False)


@register_model
def depth_only_ma(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """Depth ResNet18 alone with mask attention after layer1 and layer2 (Table 2: 3D + MA)."""
    return _single(pretrained, num_classes, "depth", mask_attention=True)


@register_model
def fusion_s1_data(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """S1 data-level fusion: one ResNet18+MA over the 6-channel [texture, depth] stack (Table 3)."""
    return _build(pretrained, num_classes=num_classes, fusion="data")


@register_model
def fusion_s2_decision(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """S2 decision-level fusion: two ResNet18+MA classifiers, probabilities averaged (Table 3)."""
    return _build(pretrained, num_classes=num_classes, fusion="decision")


@register_model
def fusion_s3_fc(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """S3 FC-level fusion: pooled features of two ResNet18+MA concatenated -> fc (Table 3)."""
    return _build(pretrained, num_classes=num_classes, fusion="fc")


@register_model
def fusion_s4_sum(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """S4 conv-level fusion, no weights: M = X_t + X_d after layer3, layer4 (Tables 3, 4)."""
    return _build(pretrained, num_classes=num_classes, fusion="sum")


@register_model
def afnet_m_no_ma(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """AFNet-M without mask attention: adaptive fusion after layer3 and layer4 (Tables 2, 4)."""
    return _build(pretrained, num_classes=num_classes, mask_attention=False)


@register_model
def afnet_m(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """AFNet-M: MA after layer1/layer2 in each branch, adaptive fusion after layer3 and layer4."""
    return _build(pretrained, num_classes=num_classes)


@register_model
def afnet_m_layer1234(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """AFNet-M with adaptive fusion after layer1, layer2, layer3 and layer4 (Fig. 5)."""
    layers = ("layer1", "layer2", "layer3", "layer4")
    return _build(pretrained, num_classes=num_classes, fusion_layers=layers)


@register_model
def afnet_m_layer234(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """AFNet-M with adaptive fusion after layer2, layer3 and layer4 (Fig. 5)."""
    return _build(pretrained, num_classes=num_classes, fusion_layers=("layer2", "layer3", "layer4"))


@register_model
def afnet_m_layer34(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """AFNet-M with adaptive fusion after layer3 and layer4: the same model as afnet_m (Fig. 5)."""
    return _build(pretrained, num_classes=num_classes, fusion_layers=("layer3", "layer4"))


@register_model
def afnet_m_layer4(*, num_classes: int = 6, pretrained=None) -> AFNetM:
    """AFNet-M with adaptive fusion after layer4 only (Fig. 5)."""
    return _build(pretrained, num_classes=num_classes, fusion_layers=("layer4",))


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
