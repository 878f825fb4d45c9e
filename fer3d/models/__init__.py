"""fer3d.models: AFNet-M (Sui et al., 2022) and its ablation variants, built by name.

Stage: training. :mod:`fer3d.models.afnet_m` holds the blocks (mask attention,
adaptive fusion) and the configurable two-branch ResNet18 :class:`AFNetM`;
:mod:`fer3d.models.variants` the named builders of the paper's tables and the registry;
:mod:`fer3d.models.packed` trains K models of one variant as one network grouped K ways
(:mod:`fer3d.models.channels`: the channel layout that shares).
Every model is called as ``model(texture (B,3,S,S), depth (B,3,S,S), mask (B,1,h,w))``
and returns logits ``(B, num_classes)``.
"""

from fer3d.models.afnet_m import (
    HEAD_INITS,
    AdaptiveFusion,
    AFNetM,
    MaskAttention,
    SumFusion,
    imagenet_weights_path,
    load_resnet18_weights,
    resize_mask,
)
from fer3d.models.variants import (
    count_parameters,
    create_model,
    describe_models,
    list_models,
    paper_tag,
    param_size_mib,
    register_model,
)

__all__ = [
    "HEAD_INITS",
    "AFNetM",
    "AdaptiveFusion",
    "MaskAttention",
    "SumFusion",
    "count_parameters",
    "create_model",
    "describe_models",
    "imagenet_weights_path",
    "list_models",
    "load_resnet18_weights",
    "paper_tag",
    "param_size_mib",
    "register_model",
    "resize_mask",
]
