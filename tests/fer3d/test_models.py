"""Tests of fer3d.models: every registered variant on CPU at 64x64, the blocks against
their equations, mask resizing, weight loading, and the registry."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
import torchvision

from fer3d.errors import CheckpointError
from fer3d.models import (
    AdaptiveFusion,
    MaskAttention,
    count_parameters,
    create_model,
    describe_models,
    imagenet_weights_path,
    list_models,
    paper_tag,
    param_size_mib,
    resize_mask,
)
from fer3d.train.checkpoint import read_pretrained

S = 64
B = 2
NUM_CLASSES = 6

# Parameter counts from the architecture, written out so a change to any block shows here.
TRUNK = 11_176_512  # torchvision resnet18 without fc
FC512 = 512 * NUM_CLASSES + NUM_CLASSES


def ma_params(c: int) -> int:
    """Two groups of conv(C->2C) + conv(2C->C), with biases."""
    return 2 * (c * 2 * c + 2 * c + 2 * c * c + c)


def af_params(c: int) -> int:
    """One C->C conv (with bias) per modality."""
    return 2 * (c * c + c)


MA_BRANCH = ma_params(64) + ma_params(128)
AF_34 = af_params(256) + af_params(512)
FC1024 = 1024 * NUM_CLASSES + NUM_CLASSES
EXPECTED_PARAMS = {
    "texture_only": TRUNK + FC512,
    "texture_only_ma": TRUNK + MA_BRANCH + FC512,
    "depth_only": TRUNK + FC512,
    "depth_only_ma": TRUNK + MA_BRANCH + FC512,
    "fusion_s1_data": TRUNK + 64 * 3 * 7 * 7 + FC512,
    "fusion_s2_decision": 2 * (TRUNK + FC512),
    "fusion_s3_fc": 2 * TRUNK + FC1024,
    "fusion_s4_sum": 2 * TRUNK + FC512,
    "afnet_m_no_ma": 2 * TRUNK + AF_34 + FC512,
    "afnet_m": 2 * (TRUNK + MA_BRANCH) + AF_34 + FC512,
    "afnet_m_no_ma_layer1234": 2 * TRUNK + sum(map(af_params, (64, 128, 256, 512))) + FC512,
    "afnet_m_no_ma_layer234": 2 * TRUNK + sum(map(af_params, (128, 256, 512))) + FC512,
    "afnet_m_no_ma_layer4": 2 * TRUNK + af_params(512) + FC512,
    "fusion_s4_sum_ma": 2 * (TRUNK + MA_BRANCH) + FC512,
    "fusion_s1_data_ma": TRUNK + 64 * 3 * 7 * 7 + MA_BRANCH + FC512,
    "fusion_s2_decision_ma": 2 * (TRUNK + MA_BRANCH + FC512),
    "fusion_s3_fc_ma": 2 * (TRUNK + MA_BRANCH) + FC1024,
    "afnet_m_layer1234": 2 * (TRUNK + MA_BRANCH) + sum(map(af_params, (64, 128, 256, 512))) + FC512,
    "afnet_m_layer234": 2 * (TRUNK + MA_BRANCH) + sum(map(af_params, (128, 256, 512))) + FC512,
    "afnet_m_layer4": 2 * (TRUNK + MA_BRANCH) + af_params(512) + FC512,
}


def make_inputs(size: int = S, batch: int = B, mask_size: int | None = None, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    m = size // 4 if mask_size is None else mask_size
    return (
        torch.rand(batch, 3, size, size, generator=g),
        torch.rand(batch, 3, size, size, generator=g),
        torch.rand(batch, 1, m, m, generator=g),
    )


def build(name: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return create_model(name, num_classes=NUM_CLASSES, **kwargs)


def randomize_(module: torch.nn.Module, seed: int = 3) -> None:
    """Move parameters off their identity/zero initialisation so equations are really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)



@pytest.fixture(scope="module", params=list_models())
def variant(request):
    """One model per variant shared by the tests below, with its state at build time."""
    model = build(request.param)
    return request.param, model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(7)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state


def test_registry_covers_the_papers_variants():
    assert list_models() == list(EXPECTED_PARAMS)
    descriptions = describe_models()
    assert all(descriptions[name] and "\n" not in descriptions[name] for name in list_models())


def test_forward_backward_shape_and_finite(variant):
    _, model, _ = variant
    model.train()
    model.zero_grad()
    logits = model(*make_inputs())
    assert logits.shape == (B, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 5])).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # the classifier and the first conv of every branch learn
    assert all(branch.conv1.weight.grad.abs().sum() > 0 for branch in model.branches.values())


def test_same_seed_same_model_and_logits(variant):
    name, model, initial = variant
    twin = build(name)
    for (key, a), b in zip(initial.items(), twin.state_dict().values()):
        assert torch.equal(a, b), key
    model.load_state_dict(initial)
    model.eval()
    twin.eval()
    inputs = make_inputs()
    with torch.no_grad():
        assert torch.equal(model(*inputs), twin(*inputs))


def test_parameter_count(variant):
    name, model, _ = variant
    assert count_parameters(model) == EXPECTED_PARAMS[name]


def test_forward_surface_composes(variant):
    _, model, _ = variant
    model.eval()
    inputs = make_inputs()
    with torch.no_grad():
        features = model.forward_features(*inputs)
        assert features.shape == (B, model.num_features, S // 32, S // 32)
        assert torch.equal(model.forward_head(features), model(*inputs))
        assert model.forward_head(features, pre_logits=True).shape == (B, model.num_features)
        model.reset_classifier(3)
        assert model.forward_head(features).shape == (B, 3)
    model.reset_classifier(NUM_CLASSES)


def test_paper_unit_table4():
    """torchsummary-style size: AF's shared conv counts once per call (twice)."""
    inputs = make_inputs(batch=1)
    fc_once = FC512
    af_twice = 2 * (af_params(256) + af_params(512))
    expected = {
        "afnet_m": 2 * (TRUNK + MA_BRANCH) + af_twice + fc_once,
        "afnet_m_no_ma": 2 * TRUNK + af_twice + fc_once,
        "fusion_s4_sum_ma": 2 * (TRUNK + MA_BRANCH) + fc_once,
    }
    sizes = {name: param_size_mib(build(name), *inputs) for name in expected}
    assert sizes == {name: count * 4 / 2**20 for name, count in expected.items()}
    assert {name: round(v, 2) for name, v in sizes.items()} == {
        "afnet_m": 91.55,
        "afnet_m_no_ma": 90.29,
        "fusion_s4_sum_ma": 86.54,
    }


def test_mask_attention_is_gamma_x_plus_beta():
    torch.manual_seed(0)
    ma = MaskAttention(8)
    randomize_(ma)
    x = torch.randn(B, 8, 6, 6)
    mask = torch.rand(B, 1, 12, 12)

    def pointwise(conv, t):
        w, b = conv.weight[:, :, 0, 0], conv.bias[None, :, None, None]
        return torch.einsum("oc,bchw->bohw", w, t) + b

    # area resize of 12 -> 6 is the mean of 2x2 blocks; then the mask fills 8 channels
    m = mask.reshape(B, 1, 6, 2, 6, 2).mean(dim=(3, 5)).expand(B, 8, 6, 6)
    gamma = pointwise(ma.gamma[2], torch.relu(pointwise(ma.gamma[0], m)))
    beta = pointwise(ma.beta[2], torch.relu(pointwise(ma.beta[0], m)))
    assert sum(isinstance(c, torch.nn.Conv2d) for c in ma.modules()) == 4
    torch.testing.assert_close(ma(x, mask), gamma * x + beta)


def test_mask_attention_identity_init_starts_as_identity():
    ma = MaskAttention(16, head_init="identity")
    x = torch.randn(B, 16, 4, 4)
    torch.testing.assert_close(ma(x, torch.rand(B, 1, 4, 4)), x)


def test_identity_init_mask_has_no_effect_at_step_0():
    model = build("afnet_m", head_init="identity").eval()
    texture, depth, mask = make_inputs()
    with torch.no_grad():
        assert torch.equal(model(texture, depth, mask), model(texture, depth, 1 - mask))


def test_paper_init_mask_changes_the_output_at_step_0():
    """The paper draws MA's convolutions from a normal distribution: the mask acts at once."""
    model = build("afnet_m").eval()
    texture, depth, mask = make_inputs()
    with torch.no_grad():
        a, b = model(texture, depth, mask), model(texture, depth, 1 - mask)
    assert torch.isfinite(a).all() and (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("block", [MaskAttention, AdaptiveFusion])
def test_paper_init_is_he_normal_with_zero_bias(block):
    torch.manual_seed(0)
    module = block(256)
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (4 if block is MaskAttention else 2)
    for conv in convs:
        std = (2.0 / conv.out_channels) ** 0.5
        assert abs(conv.weight.std().item() / std - 1) < 0.05
        assert abs(conv.weight.mean().item()) < 0.05 * std
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))


def test_unknown_head_init_is_refused():
    with pytest.raises(ValueError, match="head_init must be one of"):
        create_model("afnet_m", head_init="xavier")


def test_adaptive_fusion_is_weighted_sum_with_weights_in_unit_interval():
    torch.manual_seed(0)
    af = AdaptiveFusion(8)
    randomize_(af)
    x_t, x_d = torch.randn(B, 8, 5, 5), torch.randn(B, 8, 5, 5) * 3

    def weights(conv, x):
        w, b = conv.weight[:, :, 0, 0], conv.bias
        avg, mx = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
        return torch.sigmoid(avg @ w.T + b + mx @ w.T + b)[:, :, None, None]

    w_t, w_d = weights(af.texture, x_t), weights(af.depth, x_d)
    torch.testing.assert_close(af(x_t, x_d), w_t * x_t + w_d * x_d)
    assert ((w_t > 0) & (w_t < 1) & (w_d > 0) & (w_d < 1)).all()
    torch.testing.assert_close(af.last_weights[0], w_t)
    torch.testing.assert_close(af.last_weights[1], w_d)


def test_fusion_weights_hook_reports_every_fused_layer():
    model = build("afnet_m_layer1234").eval()
    with torch.no_grad():
        model(*make_inputs())
    weights = model.fusion_weights()
    assert {k: tuple(v[0].shape) for k, v in weights.items()} == {
        "layer1": (B, 64, 1, 1),
        "layer2": (B, 128, 1, 1),
        "layer3": (B, 256, 1, 1),
        "layer4": (B, 512, 1, 1),
    }


def test_decision_fusion_returns_log_mean_probabilities():
    model = build("fusion_s2_decision").eval()
    with torch.no_grad():
        logits = model(*make_inputs())
        pooled = model.forward_head(model.forward_features(*make_inputs()), pre_logits=True)
        p_t = model.fc["texture"](pooled[:, :512]).softmax(1)
        p_d = model.fc["depth"](pooled[:, 512:]).softmax(1)
    torch.testing.assert_close(logits.exp(), (p_t + p_d) / 2)


def test_resize_mask_area_when_shrinking_bilinear_when_growing():
    mask = torch.rand(B, 1, 56, 56)
    block_means = mask.reshape(B, 1, 28, 2, 28, 2).mean(dim=(3, 5))
    torch.testing.assert_close(resize_mask(mask, (28, 28)), block_means)
    assert resize_mask(mask, (56, 56)) is mask
    grown = resize_mask(mask, (112, 112))
    assert grown.shape == (B, 1, 112, 112)
    bilinear = F.interpolate(mask, size=(112, 112), mode="bilinear", align_corners=False)
    torch.testing.assert_close(grown, bilinear)
    ones = resize_mask(torch.ones(1, 1, 7, 7), (20, 20))
    torch.testing.assert_close(ones, torch.ones(1, 1, 20, 20))
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        resize_mask(torch.rand(B, 3, 8, 8), (4, 4))


@pytest.fixture(scope="module")
def afnet_m_with_live_masks():
    """afnet_m whose mask attention is off its identity start, so the mask matters."""
    model = build("afnet_m", head_init="identity").eval()
    randomize_(model.mask_attention)
    return model


@pytest.mark.parametrize("size, mask_size", [(64, 16), (64, 8), (224, 56), (224, 224)])
def test_mask_reaches_each_stage_at_its_feature_size(afnet_m_with_live_masks, size, mask_size):
    model = afnet_m_with_live_masks
    seen = []
    def record(module, args, out):
        seen.append((tuple(args[0].shape), tuple(out.shape)))

    hooks = [ma.register_forward_hook(record) for ma in model.mask_attention["texture"].values()]
    texture, depth, mask = make_inputs(size=size, batch=1, mask_size=mask_size)
    with torch.no_grad():
        logits = model(texture, depth, mask)
    for h in hooks:
        h.remove()
    assert seen == [((1, 64, size // 4, size // 4),) * 2, ((1, 128, size // 8, size // 8),) * 2]
    assert logits.shape == (1, NUM_CLASSES) and torch.isfinite(logits).all()


def test_mask_changes_the_logits(afnet_m_with_live_masks):
    texture, depth, mask = make_inputs()
    with torch.no_grad():
        logits = afnet_m_with_live_masks(texture, depth, mask)
        assert not torch.allclose(logits, afnet_m_with_live_masks(texture, depth, 1 - mask))


def test_single_modality_ignores_the_other_input():
    texture, depth, mask = make_inputs()
    model = build("texture_only").eval()
    with torch.no_grad():
        assert torch.equal(model(texture, None, None), model(texture, depth, mask))
    model = build("depth_only_ma").eval()
    with torch.no_grad():
        assert torch.equal(model(None, depth, mask), model(texture, depth, mask))


@pytest.mark.parametrize(
    "texture_shape, depth_shape, mask_shape, message",
    [
        ((B, 1, S, S), (B, 3, S, S), (B, 1, 16, 16), "texture must be"),
        ((B, 3, S, S), (B, 3, 32, 32), (B, 1, 16, 16), "differ"),
        ((B, 3, S, S), (B, 3, S, S), (B, 2, 16, 16), "mask must be"),
    ],
)
def test_bad_input_shapes_are_named(texture_shape, depth_shape, mask_shape, message):
    model = build("afnet_m")
    with pytest.raises(ValueError, match=message):
        model(torch.rand(texture_shape), torch.rand(depth_shape), torch.rand(mask_shape))


def test_pretrained_file_loads_into_both_branches(resnet18_file):
    path, state = resnet18_file
    model = build("afnet_m", pretrained=read_pretrained(path))
    for branch in model.branches.values():
        for key, value in branch.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert model.fc.weight.shape == (NUM_CLASSES, 512)


def test_pretrained_file_widens_first_conv_for_data_fusion(resnet18_file):
    path, state = resnet18_file
    model = build("fusion_s1_data", pretrained=read_pretrained(path))
    w = state["conv1.weight"]
    assert torch.equal(model.branches["rgbd"].conv1.weight, torch.cat([w, w], dim=1) / 2)
    deep = model.branches["rgbd"].layer4[1].conv2.weight
    assert torch.equal(deep, state["layer4.1.conv2.weight"])


def test_pretrained_file_that_is_not_resnet18_is_refused(tmp_path, resnet18_file):
    _, state = resnet18_file
    bad = tmp_path / "broken.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4")}, bad)
    with pytest.raises(ValueError, match=r"does not match torchvision resnet18: .*layer4"):
        build("afnet_m", pretrained=read_pretrained(bad))
    with pytest.raises(CheckpointError, match="missing.pth: no such file"):
        read_pretrained(tmp_path / "missing.pth")


def test_imagenet_without_cached_file_raises_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert imagenet_weights_path() == expected
    with pytest.raises(CheckpointError, match="never downloads") as err:
        read_pretrained("imagenet")
    assert str(expected) in str(err.value) and "--pretrained PATH" in str(err.value)
    assert not expected.exists()


def test_imagenet_from_the_hub_cache(tmp_path, monkeypatch, resnet18_file):
    path, state = resnet18_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imagenet_weights_path().parent.mkdir(parents=True)
    shutil.copy(path, imagenet_weights_path())
    model = build("depth_only", pretrained=read_pretrained("imagenet"))
    assert torch.equal(model.branches["depth"].conv1.weight, state["conv1.weight"])


def test_unknown_model_lists_available_names():
    with pytest.raises(ValueError, match="unknown model .afnet.*fusion_s4_sum.*afnet_m_no_ma"):
        create_model("afnet")


def test_registry_equals_the_torch_free_catalog():
    from fer3d.paper import catalog

    assert list_models() == list(catalog.VARIANT_NAMES)
    for variant in catalog.VARIANTS:
        assert paper_tag(variant.name) == variant.paper
    for target in catalog.TARGETS.values():
        assert {v for v, _ in target.rows} <= set(list_models()), target.name


def test_table2_and_fig5_variants_carry_no_mask_attention():
    from fer3d.paper import catalog

    without_ma = [v for t in ("table2", "fig5") for v, _ in catalog.TARGETS[t].rows]
    for name in without_ma:
        model = build(name)
        assert not any(isinstance(m, MaskAttention) for m in model.modules()), name
        assert not model.uses_mask
    for name in ("afnet_m", "fusion_s4_sum_ma", "fusion_s1_data_ma", "afnet_m_layer4"):
        assert sum(isinstance(m, MaskAttention) for m in build(name).modules()) >= 2, name


def test_extras_are_named_and_untagged():
    extras = [name for name in list_models() if not paper_tag(name)]
    assert extras == ["fusion_s1_data_ma", "fusion_s2_decision_ma", "fusion_s3_fc_ma",
                      "afnet_m_layer1234", "afnet_m_layer234", "afnet_m_layer4"]
    assert all(describe_models()[name].startswith("Extra:") for name in extras)
