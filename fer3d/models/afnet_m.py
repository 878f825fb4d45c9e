"""AFNet-M (Sui et al., 2022): two ResNet18 branches (texture, depth) refined by mask
attention and fused by adaptive fusion, plus the configurations of the paper's ablations.

Stage: training. Blocks first (:func:`resize_mask`, :class:`MaskAttention`,
:class:`AdaptiveFusion`, :class:`SumFusion`), then the model class :class:`AFNetM`, then
weight loading (:func:`load_resnet18_weights`). The named variants live in
:mod:`fer3d.models.variants`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from fer3d.models.channels import cat_channels, check_pair, split_channels

MODALITIES = ("texture", "depth")
LAYERS = ("layer1", "layer2", "layer3", "layer4")
LAYER_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
MASK_ATTENTION_LAYERS = ("layer1", "layer2")
FUSIONS = ("adaptive", "sum", "fc", "decision", "data", "none")
HEAD_INITS = ("normal", "identity")


def _check_head_init(head_init: str) -> None:
    if head_init not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")


def normal_init_(conv: nn.Conv2d) -> None:
    """The paper's "normal distribution" for MA and AF convolutions, std chosen as
    torchvision initialises every ResNet convolution: He normal, ``std = sqrt(2 / fan_out)``
    (fan_out = out_channels for 1x1), bias 0. The new convolutions then start at the scale of
    the backbone they sit in (docs/model.md says why not e.g. std 0.01)."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)


def resize_mask(mask: torch.Tensor, size: tuple[int, int], groups: int = 1) -> torch.Tensor:
    """Resize a salient-region mask ``(B, 1, h, w)`` (``(B, G, h, w)``: G packed cells) to ``size``.

    Area averaging when shrinking (keeps the fraction of salient area per cell, as the
    shard's mask56/mask28 are made), bilinear when growing.

    >>> resize_mask(torch.ones(2, 1, 56, 56), (28, 28)).shape
    torch.Size([2, 1, 28, 28])
    """
    if mask.ndim != 4 or mask.shape[1] != groups:
        raise ValueError(f"mask must be (B, {groups}, h, w), got {tuple(mask.shape)}")
    h, w = mask.shape[-2:]
    if (h, w) == tuple(size):
        return mask
    if size[0] <= h and size[1] <= w:
        return F.interpolate(mask, size=size, mode="area")
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=False)


def _pointwise_mlp(channels: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
    )


class Grouped(nn.Module):
    """Channel-structural steps follow ``groups``, the cells packed in (1: one model; see
    :func:`fer3d.models.packed.pack_models`): maps ``(B, G*C, H, W)``, masks ``(B, G, h, w)``."""

    groups = 1


class MaskAttention(Grouped):
    """Mask attention (Eq. 1): ``out = gamma * X + beta`` with gamma, beta from the mask.

    The single-channel mask is resized to X's grid and expanded to C channels; two
    independent groups of 1x1 convolutions (conv C->2C, ReLU, conv 2C->C) give gamma and
    beta of X's shape: four 1x1 convolutions per module. The hidden width 2C is the one
    whose parameter count matches the paper's Table 4 (docs/model.md). Expanding first is
    what the paper describes; a 1x1 conv over C identical channels equals a 1->2C conv
    with summed weights, so the expansion adds parameters but no capacity.

    ``head_init="normal"`` (the paper): all four convolutions from :func:`normal_init_`, so
    the mask shapes the features from the first step. ``"identity"``: the last convolutions
    start at gamma = 1, beta = 0 (the others PyTorch's default), so ImageNet features enter
    layer2/layer3 unchanged at the first step and the mask has no effect until trained.

    Shapes: ``x (B, C, H, W)``, ``mask (B, 1, h, w)`` at any resolution -> ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, head_init: str = "normal"):
        super().__init__()
        _check_head_init(head_init)
        self.channels = channels
        self.gamma = _pointwise_mlp(channels, 2 * channels)
        self.beta = _pointwise_mlp(channels, 2 * channels)
        if head_init == "normal":
            for conv in (*self.gamma[::2], *self.beta[::2]):
                normal_init_(conv)
        else:
            nn.init.zeros_(self.gamma[2].weight)
            nn.init.ones_(self.gamma[2].bias)
            nn.init.zeros_(self.beta[2].weight)
            nn.init.zeros_(self.beta[2].bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        c, g = self.channels, self.groups
        if x.ndim != 4 or x.shape[1] != g * c:
            raise ValueError(f"x must be (B, {g * c}, H, W), got {tuple(x.shape)}")
        if mask.shape[0] != x.shape[0]:
            raise ValueError(f"mask batch {mask.shape[0]} != feature batch {x.shape[0]}")
        m = resize_mask(mask.to(x.dtype), tuple(x.shape[-2:]), g)
        m = m[:, :, None].expand(-1, -1, c, -1, -1).flatten(1, 2)  # each cell's mask, C times
        return self.gamma(m) * x + self.beta(m)


class AdaptiveFusion(Grouped):
    """Adaptive fusion (Eq. 2-3): ``M = w_t * X_t + w_d * X_d``.

    Per modality, ``w = sigmoid(conv(avgpool(X)) + conv(maxpool(X)))`` with one 1x1 conv
    (C->C, shared by the two pooled descriptors), so each channel gets a weight in (0, 1).
    The last weights are kept in :attr:`last_weights` (detached) for report figures.
    ``head_init="normal"`` (the paper) draws both convs with :func:`normal_init_`;
    ``"identity"`` keeps PyTorch's default (uniform) initialisation.

    Shapes: ``x_t, x_d (B, C, H, W)`` -> ``(B, C, H, W)``; weights ``(B, C, 1, 1)``.
    """

    def __init__(self, channels: int, head_init: str = "normal"):
        super().__init__()
        _check_head_init(head_init)
        self.channels = channels
        self.texture = nn.Conv2d(channels, channels, 1)
        self.depth = nn.Conv2d(channels, channels, 1)
        if head_init == "normal":
            normal_init_(self.texture)
            normal_init_(self.depth)
        self.last_weights: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def channel_weights(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """``sigmoid(conv(avgpool(x)) + conv(maxpool(x)))``: ``(B, C, H, W) -> (B, C, 1, 1)``."""
        return torch.sigmoid(conv(F.adaptive_avg_pool2d(x, 1)) + conv(F.adaptive_max_pool2d(x, 1)))

    def forward(self, x_t: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        check_pair(x_t, x_d, self.channels * self.groups)
        w_t = self.channel_weights(self.texture, x_t)
        w_d = self.channel_weights(self.depth, x_d)
        self.last_weights = (w_t.detach(), w_d.detach())
        return w_t * x_t + w_d * x_d


class SumFusion(Grouped):
    """Convolution-level fusion without weights (S4): ``M = X_t + X_d``, i.e. AF with w = 1.

    Shapes: ``x_t, x_d (B, C, H, W)`` -> ``(B, C, H, W)``; no parameters (``head_init`` is
    accepted so that every fusion block is built the same way).
    """

    def __init__(self, channels: int, head_init: str = "normal"):
        super().__init__()
        _check_head_init(head_init)
        self.channels = channels

    def forward(self, x_t: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        check_pair(x_t, x_d, self.channels * self.groups)
        return x_t + x_d


def resnet18_trunk(in_chans: int = 3) -> ResNet:
    """A torchvision ResNet18 without classifier (``fc`` is Identity); torchvision names
    (``conv1 .. layer4``) are kept so its state dicts load unchanged."""
    net = resnet18()
    if in_chans != 3:
        net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


def _stem(net: ResNet, x: torch.Tensor) -> torch.Tensor:
    return net.maxpool(net.relu(net.bn1(net.conv1(x))))


class AFNetM(Grouped):
    """AFNet-M and the paper's ablations, one configurable two-branch ResNet18.

    ``forward(texture (B,3,S,S), depth (B,3,S,S), mask (B,1,h,w)) -> logits (B, n)``
    for every configuration; S is free (64 in tests, 224 in the paper); the mask may
    have any resolution and is resized to each mask-attention stage (S/4 and S/8).

    Configurations (``fusion``):

    * ``"adaptive"`` (AFNet-M): per-branch MA after layer1 and layer2; an
      :class:`AdaptiveFusion` after each layer in ``fusion_layers`` (default
      layer3, layer4). The fused M becomes the texture stream (input of the texture
      branch's next layer) while the depth branch goes on with its own features; the
      last fusion (after layer4, required) feeds avgpool -> fc(512, n).
    * ``"sum"`` (S4): as ``"adaptive"`` with ``M = X_t + X_d`` (no weights).
    * ``"fc"`` (S3): pooled texture and depth features concatenated -> fc(1024, n).
    * ``"decision"`` (S2): one fc(512, n) per branch; the class probabilities are
      averaged and returned as their log (valid logits: ``softmax(log p) = p``).
    * ``"data"`` (S1): one ResNet18 over the 6-channel stack ``[texture, depth]``.
    * ``"none"``: a single branch; ``modalities`` names it (texture only or depth only).

    ``mask_attention`` switches MA on or off everywhere. ``head_init`` ("normal", the
    paper's, or "identity") initialises the MA and AF convolutions (:class:`MaskAttention`).
    Inputs a configuration does not use (depth for texture only, the mask without MA) are
    ignored and may be ``None``.
    Uniform surface as timm: :meth:`forward_features` returns the last feature map
    ``(B, num_features, S/32, S/32)`` (Grad-CAM target), :meth:`forward_head` pools and
    classifies, :meth:`reset_classifier` swaps the classifier. Packed (:class:`Grouped`),
    every input and feature map holds ``groups`` cells' channels.
    """

    def __init__(
        self,
        *,
        num_classes: int = 6,
        fusion: str = "adaptive",
        fusion_layers: tuple[str, ...] = ("layer3", "layer4"),
        mask_attention: bool = True,
        modalities: tuple[str, ...] = MODALITIES,
        head_init: str = "normal",
    ):
        super().__init__()
        _check_head_init(head_init)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if any(m not in MODALITIES for m in modalities) or len(set(modalities)) != len(modalities):
            raise ValueError(
                f"modalities must be distinct names from {MODALITIES}, got {modalities}"
            )
        if (fusion == "none") != (len(modalities) == 1):
            raise ValueError(
                f"fusion 'none' goes with exactly one modality, got {fusion!r} with {modalities}"
            )
        conv_fusion = fusion in ("adaptive", "sum")
        if conv_fusion and (
            "layer4" not in fusion_layers or any(layer not in LAYERS for layer in fusion_layers)
        ):
            raise ValueError(
                f"fusion_layers must be names from {LAYERS} including 'layer4', got {fusion_layers}"
            )
        self.fusion = fusion
        self.modalities = tuple(modalities)
        self.fusion_layers = tuple(n for n in LAYERS if conv_fusion and n in fusion_layers)
        self.uses_mask = mask_attention

        # Branch names follow their input: S1's single branch sees the 6-channel stack.
        branch_names = ("rgbd",) if fusion == "data" else self.modalities
        self.branches = nn.ModuleDict(
            {name: resnet18_trunk(6 if name == "rgbd" else 3) for name in branch_names}
        )
        self.mask_attention = nn.ModuleDict(
            {
                name: nn.ModuleDict(
                    {layer: MaskAttention(LAYER_CHANNELS[layer], head_init)
                     for layer in MASK_ATTENTION_LAYERS}
                )
                for name in branch_names
            }
            if mask_attention
            else {}
        )
        fusion_block = AdaptiveFusion if fusion == "adaptive" else SumFusion
        self.fusions = nn.ModuleDict(
            {layer: fusion_block(LAYER_CHANNELS[layer], head_init) for layer in self.fusion_layers}
        )
        self.num_features = 1024 if fusion in ("fc", "decision") else 512
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs."""
        self.num_classes = num_classes
        if self.fusion == "decision":
            self.fc = nn.ModuleDict({m: nn.Linear(512, num_classes) for m in self.modalities})
        else:
            self.fc = nn.Linear(self.num_features, num_classes)

    def _branch_inputs(
        self, texture: torch.Tensor | None, depth: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        given, g = {"texture": texture, "depth": depth}, self.groups
        for name in self.modalities:
            x = given[name]
            if x is None or x.ndim != 4 or x.shape[1] != 3 * g:
                shape = None if x is None else tuple(x.shape)
                raise ValueError(f"{name} must be (B, {3 * g}, S, S), got {shape}")
        if len(self.modalities) == 2 and texture.shape != depth.shape:
            raise ValueError(
                f"texture {tuple(texture.shape)} and depth {tuple(depth.shape)} differ"
            )
        if self.fusion == "data":
            return {"rgbd": cat_channels([texture, depth], g)}
        return {name: given[name] for name in self.modalities}

    def forward_features(
        self, texture: torch.Tensor | None, depth: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Inputs as :meth:`forward` -> last feature map ``(B, num_features, S/32, S/32)``."""
        streams = self._branch_inputs(texture, depth)
        if self.uses_mask and (mask is None or mask.ndim != 4 or mask.shape[1] != self.groups):
            shape = None if mask is None else tuple(mask.shape)
            raise ValueError(f"mask must be (B, {self.groups}, h, w), got {shape}")
        streams = {name: _stem(self.branches[name], x) for name, x in streams.items()}
        for layer in LAYERS:
            for name in streams:
                streams[name] = getattr(self.branches[name], layer)(streams[name])
                if self.uses_mask and layer in self.mask_attention[name]:
                    streams[name] = self.mask_attention[name][layer](streams[name], mask)
            if layer in self.fusions:
                # M replaces the texture stream; the depth branch keeps its own features.
                streams["texture"] = self.fusions[layer](streams["texture"], streams["depth"])
        if self.fusion_layers:
            return streams["texture"]
        return cat_channels(list(streams.values()), self.groups)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_features, h, w)`` -> logits ``(B, num_classes)`` (or pooled features)."""
        pooled = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)
        if pre_logits:
            return pooled
        if self.fusion != "decision":
            return self.fc(pooled)
        parts = split_channels(pooled, [512] * len(self.modalities), self.groups)
        log_probs = [
            F.log_softmax(self.fc[name](part).unflatten(1, (self.groups, -1)), dim=2).flatten(1)
            for name, part in zip(self.modalities, parts)
        ]
        # log of the mean probability, computed stably
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))

    def forward(
        self, texture: torch.Tensor | None, depth: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``texture (B,3,S,S), depth (B,3,S,S), mask (B,1,h,w) -> logits (B, num_classes)``."""
        return self.forward_head(self.forward_features(texture, depth, mask))

    def fusion_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per fused layer, ``(w_t, w_d)`` each ``(B, C, 1, 1)`` of the last forward pass."""
        return {
            layer: block.last_weights
            for layer, block in self.fusions.items()
            if isinstance(block, AdaptiveFusion) and block.last_weights is not None
        }


def imagenet_weights_path() -> Path:
    """Where torchvision keeps ResNet18 ImageNet weights: ``<torch hub dir>/checkpoints/<file>``."""
    filename = os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_resnet18_weights(model: AFNetM, state: Mapping[str, torch.Tensor]) -> AFNetM:
    """Load a torchvision resnet18 state dict into every branch of ``model`` (in place;
    returns it). Files are read by :func:`fer3d.train.checkpoint.read_pretrained` (the one
    reader of weights files; ``"imagenet"`` is torchvision's file in the torch hub cache,
    never downloaded). Loading is strict except for ``fc``, which stays freshly initialised;
    ValueError names what does not match. S1's 6-channel first conv gets the RGB filters
    twice, halved, so that a (texture, depth) pair of equal images gives the pretrained
    response.
    """
    first = state.get("conv1.weight")
    if first is None or first.ndim != 4 or first.shape[1] not in (1, 3):
        raise ValueError("not a torchvision resnet18 state dict (no conv1.weight of shape "
                         "(64, 3, 7, 7))")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    for branch in model.branches.values():
        branch_state = dict(state)
        in_chans = branch.conv1.in_channels
        if in_chans != first.shape[1]:
            repeats = in_chans // first.shape[1]
            branch_state["conv1.weight"] = first.repeat(1, repeats, 1, 1) / repeats
        try:
            branch.load_state_dict(branch_state, strict=True)
        except RuntimeError as err:
            detail = " ".join(str(err).split())  # one line, cut: 100+ missing keys is common
            detail = detail if len(detail) <= 200 else detail[:197] + "..."
            raise ValueError(f"does not match torchvision resnet18: {detail}") from None
    return model
