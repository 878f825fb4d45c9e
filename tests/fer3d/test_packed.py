"""Packed cells (fer3d.models.packed, fer3d.train.packed): K cells trained as one network
grouped K ways equal K cells trained alone.

Tolerances (stated once, here and in docs/performance.md):
- fp64: the packed network's logits, running statistics and weights after training steps
  equal the lone models' to 1e-12 (measured: exactly equal forward, 1e-15 after 3 steps).
- fp32, 3 Adam steps at the paper's lr 1e-4 (AFNet-M, 32 px): the cells' weight changes
  (after - before) equal their lone twins' within 20 % (relative L2 norm of the
  difference; measured 0.3 % with K = 2, 7 % with K = 3) and their eval logits on held-out
  inputs within 2 % (measured 0.02 %, 0.6 %). Grouped and plain convolutions round
  differently, and Adam's first steps are sign-like: a weight whose gradient is zero up to
  rounding moves by +-lr either way (0.02 % of the weights after one step), and later steps
  amplify that. A packing mistake (a cell
  fed its neighbour's batches) gives 141 % and 35 %.
- campaigns in fp32: the same summary.json; at most one test prediction per cell may flip
  (measured: none; logits within 1e-2).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer3d.campaign.run import run_campaign
from fer3d.errors import ConfigError, DivergedError
from fer3d.models import create_model
from fer3d.models.packed import (
    cell_logits,
    pack_models,
    pack_optimizer_state,
    pack_state,
    to_cells_layout,
    unpack_optimizer_state,
    unpack_state,
)
from fer3d.settings import TrainConfig
from fer3d.train import packed as trainer
from fer3d.train import step as engine
from fer3d.train.runtime import AmpMode, make_optimizer

CPU = torch.device("cpu")
S, B = 32, 4


def _models(variant: str, k: int, dtype=torch.float32):
    models = []
    for i in range(k):
        torch.manual_seed(i)
        models.append(create_model(variant).to(dtype))
    with torch.device("meta"):
        template = create_model(variant)
    return models, pack_models([m.state_dict() for m in models], template).to(dtype)


def _batches(k: int, steps: int, dtype, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(k * B, 3, S, S, generator=g, dtype=dtype),
             torch.randn(k * B, 3, S, S, generator=g, dtype=dtype),
             torch.rand(k * B, 1, S // 4, S // 4, generator=g, dtype=dtype),
             torch.randint(0, 6, (k * B,), generator=g)) for _ in range(steps)]


@pytest.mark.parametrize("variant", ["afnet_m", "fusion_s1_data", "fusion_s2_decision_ma",
                                     "fusion_s3_fc", "fusion_s4_sum", "texture_only",
                                     "afnet_m_layer1234"])
def test_packed_network_computes_its_models_exactly(variant):
    """Every fusion kind (adaptive, sum, fc, decision, data, one branch), mask attention on
    and off: in fp64 the packed forward (training mode) gives each cell's logits and
    running statistics of its lone model."""
    k = 2
    models, net = _models(variant, k, torch.float64)
    tex, dep, mask, _ = _batches(k, 1, torch.float64)[0]
    out = cell_logits(net(*(to_cells_layout(t, k) for t in (tex, dep, mask))), k)
    for i, m in enumerate(models):
        cut = slice(i * B, (i + 1) * B)
        torch.testing.assert_close(out[i], m(tex[cut], dep[cut], mask[cut]), rtol=0, atol=1e-12)
        for name, value in unpack_state(net.state_dict(), k)[i].items():
            torch.testing.assert_close(value, m.state_dict()[name], rtol=0, atol=1e-12)


def test_state_and_optimizer_state_pack_and_unpack():
    models, net = _models("texture_only", 2)
    states = [m.state_dict() for m in models]
    for back, state in zip(unpack_state(pack_state(states), 2), states):
        assert back.keys() == state.keys()
        assert all(torch.equal(back[n], state[n]) for n in state)
    opt = make_optimizer(net.parameters(), 1e-3)
    engine.train_step(net, _batches(2, 1, torch.float32)[0], opt,
                      torch.amp.GradScaler("cpu", enabled=False), AmpMode(None), CPU,
                      engine.Totals(2, CPU), cells=2, channels_last=False)
    parts = unpack_optimizer_state(opt.state_dict(), 2)
    assert parts[1]["state"][0]["exp_avg"].shape == next(models[0].parameters()).shape
    again = pack_optimizer_state(parts)
    for i, s in opt.state_dict()["state"].items():
        assert all(torch.equal(again["state"][i][n], v) for n, v in s.items())


def _train(variant: str, k: int, steps: int, dtype, swap: bool = False):
    """Train K cells packed and K alone (``swap``: each lone cell on its neighbour's
    batches, a packing mistake); per cell (packed weights, lone model, initial weights)."""
    models, net = _models(variant, k, dtype)
    before = [{n: v.detach().clone() for n, v in m.named_parameters()} for m in models]
    batches, scaler = _batches(k, steps, dtype), torch.amp.GradScaler("cpu", enabled=False)
    opt = make_optimizer(net.parameters(), 1e-4)
    for b in batches:
        engine.train_step(net, b, opt, scaler, AmpMode(None), CPU, engine.Totals(k, CPU),
                          cells=k, channels_last=False)
    for i, m in enumerate(models):
        o, src = make_optimizer(m.parameters(), 1e-4), (i + 1) % k if swap else i
        for b in batches:
            engine.train_step(m, tuple(t[src * B:(src + 1) * B] for t in b), o, scaler,
                              AmpMode(None), CPU, engine.Totals(1, CPU), channels_last=False)
    return list(zip(unpack_state(net.state_dict(), k), models, before))


def _weight_change_gap(trained) -> float:
    """||packed change - lone change|| / ||lone change|| over every cell's parameters."""
    num = den = 0.0
    for packed, model, before in trained:
        for n, p in model.named_parameters():
            lone = p.detach() - before[n]
            num += float((packed[n] - before[n] - lone).pow(2).sum())
            den += float(lone.pow(2).sum())
    return (num / den) ** 0.5


def _output_gap(trained, variant: str, dtype) -> float:
    """Relative L2 gap of the packed and lone cells' eval logits on held-out inputs."""
    probe = _batches(1, 1, dtype, seed=9)[0][:3]
    num = den = 0.0
    for packed, model, _ in trained:
        twin = create_model(variant).to(dtype)
        twin.load_state_dict(packed)
        with torch.no_grad():
            ref, out = model.eval()(*probe), twin.eval()(*probe)
        num, den = num + float((out - ref).pow(2).sum()), den + float(ref.pow(2).sum())
    return (num / den) ** 0.5


def test_packed_training_equals_lone_training_fp64():
    trained = _train("afnet_m", 2, 2, torch.float64)
    assert _weight_change_gap(trained) < 1e-12
    for packed, model, _ in trained:
        for n, v in model.state_dict().items():  # running statistics and step counts too
            torch.testing.assert_close(packed[n], v, rtol=0, atol=1e-12)


def test_packed_training_equals_lone_training_fp32_within_tolerance():
    trained = _train("afnet_m", 2, 3, torch.float32)
    assert _weight_change_gap(trained) < 0.2 and _output_gap(trained, "afnet_m",
                                                             torch.float32) < 0.02
    # both measures see a packing mistake: each cell trained on its neighbour's batches
    swapped = _train("afnet_m", 2, 3, torch.float32, swap=True)
    assert _weight_change_gap(swapped) > 0.5 and _output_gap(swapped, "afnet_m",
                                                             torch.float32) > 0.1


# --------------------------------------------------------------------------- campaigns

def tiny(shard, out, **kw) -> TrainConfig:
    base = dict(shards=[shard], out=str(out), folds=2, repeats=2, subjects=2, epochs=2,
                batch_size=6, image_size=32, lr=1e-4, variant="texture_only", amp="off",
                progress=False, checkpoint_every=1)
    return TrainConfig(**{**base, **kw})


def _folds(run) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in run.glob("cells/*/fold.json")}


def assert_same_campaign(lone_run, packed_run, lone: dict, packed: dict) -> None:
    """The stated tolerance: at most one test prediction per cell differs; with none, the
    summaries are equal."""
    a, b = _folds(lone_run), _folds(packed_run)
    assert a.keys() == b.keys()
    flips = {c: int(np.sum(np.array(a[c]["predictions"]) != np.array(b[c]["predictions"])))
             for c in a}
    assert max(flips.values()) <= 1, flips
    if not any(flips.values()):
        assert packed == lone
    else:
        assert abs(packed["accuracy_mean"] - lone["accuracy_mean"]) <= sum(
            flips.values()) / lone["n_predictions"] * lone["repeats"]
    for c in a:
        la, lb = (np.load(run / "cells" / c / "logits.npz")["logits"]
                  for run in (lone_run, packed_run))
        assert np.abs(la - lb).max() < 0.05


@pytest.fixture(scope="module")
def lone(shard_factory, tmp_path_factory):
    shard = shard_factory("bu3dfe.h5", n_subjects=6, size=32)
    run = tmp_path_factory.mktemp("lone") / "run"
    return shard, run, run_campaign(tiny(shard, run, pack=1))


@pytest.mark.slow
def test_packed_campaign_gives_the_lone_summary(lone, tmp_path):
    shard, lone_run, summary = lone
    packed = run_campaign(tiny(shard, tmp_path / "run", pack=4))
    assert {f["pack"] for f in _folds(tmp_path / "run").values()} == {4}
    assert_same_campaign(lone_run, tmp_path / "run", summary, packed)
    for cell in ("r0_f0", "r1_f1"):           # each packed cell kept like a lone one
        assert sorted(p.name for p in (tmp_path / "run/cells" / cell).iterdir()) == [
            "epochs.csv", "fold.json", "logits.npz", "weights.pt"]
    assert list((tmp_path / "run").glob("claims/*")) == []


@pytest.mark.slow
def test_packed_checkpoints_resume_alone(lone, tmp_path, monkeypatch):
    """A pack stopped after its first epoch's checkpoints; the rerun trains each cell
    alone from its checkpoint and ends with the lone campaign's summary."""
    from fer3d.train.checkpoint import CellCheckpoints

    shard, lone_run, summary = lone
    real = CellCheckpoints.save_resume

    def stop_after_the_pack_saved(self, state):
        real(self, state)
        if "r1_f1" in str(self.resume_path):
            raise KeyboardInterrupt
    monkeypatch.setattr(CellCheckpoints, "save_resume", stop_after_the_pack_saved)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(tiny(shard, tmp_path / "run", pack=4))
    monkeypatch.setattr(CellCheckpoints, "save_resume", real)
    ckpts = sorted(p.parent.name for p in (tmp_path / "run").glob("cells/*/checkpoint.pt"))
    assert ckpts == ["r0_f0", "r0_f1", "r1_f0", "r1_f1"]
    resumed = run_campaign(tiny(shard, tmp_path / "run", pack=1, resume=True))
    assert {f["pack"] for f in _folds(tmp_path / "run").values()} == {1}
    assert_same_campaign(lone_run, tmp_path / "run", summary, resumed)


def test_one_diverging_cell_of_a_pack_stops_alone(bu3dfe_shard, tmp_path, monkeypatch):
    real, calls = engine.compute_loss, []

    def first_cell_nan_from_second_step(logits, labels, cells=1):
        calls.append(1)
        loss = real(logits, labels, cells)
        bad = torch.ones_like(loss)
        bad[0] = float("nan") if len(calls) > 1 else 1.0
        return loss * bad
    monkeypatch.setattr(engine, "compute_loss", first_cell_nan_from_second_step)
    with pytest.raises(DivergedError) as err:
        run_campaign(tiny(bu3dfe_shard, tmp_path / "run", repeats=1, batch_size=12, pack=2))
    assert "repeat 0, fold 0, epoch 2: loss is nan" in str(err.value)
    assert "fold 1" not in str(err.value)
    run = tmp_path / "run/cells"
    assert (run / "r0_f1/fold.json").exists() and not (run / "r0_f0/fold.json").exists()
    assert torch.load(run / "r0_f0/checkpoint.pt", weights_only=True)["epoch"] == 1


# --------------------------------------------------------------------------- pack size

class _Run:
    def __init__(self, device, amp=AmpMode(torch.bfloat16), data=True):
        self.device, self.amp, self.data = torch.device(device), amp, object() if data else None


def test_auto_pack_size_from_free_gpu_memory(monkeypatch):
    gb = 10 ** 9
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (80 * gb, 141 * gb))
    monkeypatch.setattr(trainer, "cell_bytes", lambda run: 5 * gb)
    cuda = _Run("cuda:0")
    assert trainer.pack_size(None, cuda) == 11                    # 0.7 * 80 / 5
    assert trainer.pack_size(None, cuda, share=0.5) == 5           # two processes per GPU
    monkeypatch.setattr(trainer, "cell_bytes", lambda run: 1 * gb)
    assert trainer.pack_size(None, cuda) == trainer.PACK_MAX       # capped
    monkeypatch.setattr(trainer, "cell_bytes", lambda run: 100 * gb)
    assert trainer.pack_size(None, cuda) == 1                      # never 0
    assert trainer.pack_size(None, _Run("cpu")) == 1               # CPU: measured no faster
    assert trainer.pack_size(3, _Run("cpu")) == 3
    fp16 = _Run("cuda:0", AmpMode(torch.float16, scaler=True))
    assert trainer.pack_size(None, fp16) == 1
    with pytest.raises(ConfigError, match="--pack 4: fp16's loss scale"):
        trainer.pack_size(4, fp16)
    with pytest.raises(ConfigError, match="--pack 2: the samples are not on the device"):
        trainer.pack_size(2, _Run("cpu", data=False))


# --------------------------------------------------------------------------- compile

def test_networks_are_compiled_once_per_process_and_reused(bu3dfe_shard, tmp_path,
                                                          monkeypatch):
    """torch.compile (here a counting stand-in) runs once for 4 cells, every cell starts
    from its own weights (the summary is the uncompiled run's), and the parameters keep
    their storage (what CUDA graphs recorded stays valid)."""
    compiled, storages = [], []
    real_training = trainer.Models.training

    def training(self, states):
        raw, runner = real_training(self, states)
        storages.append(next(raw.parameters()).data_ptr())
        return raw, runner
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: compiled.append(mode) or model)
    monkeypatch.setattr(trainer.Models, "training", training)
    ref = run_campaign(tiny(bu3dfe_shard, tmp_path / "ref", epochs=1))
    assert compiled == []
    storages.clear()
    out = run_campaign(tiny(bu3dfe_shard, tmp_path / "on", epochs=1, compile="on"))
    assert compiled == ["default"] and out == ref                  # CUDA: reduce-overhead
    assert len(storages) == 4 and len(set(storages)) == 1
