"""Engine: learning on a separable shard, exact resume, NaN handling, run-dir contents."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from fer3d import engine
from fer3d.data import ShardDataset
from fer3d.engine import (AmpMode, DivergedError, EpochSampler, TrainConfig, cell_seed,
                          resolve_amp, rng_state, run_campaign, set_rng_state, summarise)



def tiny(shard, out, **kw) -> TrainConfig:
    """2 subjects, 2 folds, 24 samples at 32 px: one optimiser step per epoch."""
    base = dict(shards=[shard], out=str(out), folds=2, epochs=2, batch_size=12, lr=1e-3,
                image_size=32, workers=0, subjects=2, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_resolve_amp_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) == AmpMode(None)
    assert resolve_amp("bf16", cpu) == AmpMode(torch.bfloat16)
    assert resolve_amp("auto", cpu).dtype in (None, torch.bfloat16)
    assert resolve_amp("auto", cpu).scaler is False
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        resolve_amp("fp16", cpu)


def test_epoch_sampler_depends_on_epoch_only():
    s = EpochSampler(10, seed=5)
    s.set_epoch(3)
    a = list(s)
    assert sorted(i for i, _ in a) == list(range(10))
    s.set_epoch(4)
    assert list(s) != a
    s.set_epoch(3)
    assert list(s) == a
    assert [i for i, _ in EpochSampler(4, 0, shuffle=False)] == [0, 1, 2, 3]


def test_training_batches_do_not_depend_on_workers(bu3dfe_shard):
    ds = ShardDataset([bu3dfe_shard], list(range(10)), image_size=32, train=True)
    cpu = torch.device("cpu")
    epochs = []
    for workers in (0, 2):
        loader = engine.make_loader(ds, 4, workers, train=True, seed=7, device=cpu)
        loader.sampler.set_epoch(3)
        epochs.append(list(loader))
    assert len(epochs[0]) == len(epochs[1]) == 3
    for a, b in zip(*epochs):
        assert a["index"].tolist() == b["index"].tolist()
        torch.testing.assert_close(a["texture"], b["texture"])
        torch.testing.assert_close(a["mask"], b["mask"])


def test_rng_state_roundtrip_through_weights_only(tmp_path):
    engine.seed_everything(3)
    state = rng_state()
    engine.save_checkpoint({"rng": state, "model": {}, "variant": "x"}, tmp_path / "c.pt")
    first = (torch.rand(2), np.random.rand(), __import__("random").random())
    set_rng_state(engine.load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (torch.rand(2), np.random.rand(), __import__("random").random())
    torch.testing.assert_close(first[0], again[0])
    assert first[1:] == again[1:]
    assert cell_seed(0, 1, 2) == cell_seed(0, 1, 2) != cell_seed(0, 2, 1)


def test_summarise_pools_repeats():
    recs = [{"repeat": 0, "fold": 0, "variant": "v", "labels": [0, 1], "predictions": [0, 1],
             "correct": 2, "total": 2},
            {"repeat": 0, "fold": 1, "variant": "v", "labels": [2, 2], "predictions": [2, 0],
             "correct": 1, "total": 2},
            {"repeat": 1, "fold": 0, "variant": "v", "labels": [0, 1, 2, 2],
             "predictions": [1, 1, 2, 2], "correct": 3, "total": 4}]
    s = summarise(recs, 2)
    assert s["repeat_accuracies"] == [0.75, 0.75]
    assert s["accuracy_mean"] == 0.75 and s["accuracy_std"] == 0.0
    assert s["per_class_accuracy"]["anger"] == 0.5
    assert s["per_class_accuracy"]["fear"] == 0.75
    assert np.isnan(s["per_class_accuracy"]["happiness"])
    assert np.array(s["confusion_matrix"]).sum() == 8


@pytest.mark.slow
def test_learns_separable_shard(make_shard, tmp_path):
    shard = make_shard("learn.h5", n_subjects=4, size=32)
    summary = run_campaign(tiny(shard, tmp_path / "run", subjects=4, epochs=3))
    assert summary["accuracy_mean"] >= 0.6
    run = tmp_path / "run"
    for name in ("config.json", "folds.json", "summary.json", "confusion.png"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert set(cfg["versions"]) >= {"fer3d", "torch", "torchvision", "numpy", "h5py",
                                    "python", "device"}
    fold = json.loads((run / "cells" / "r0_f1" / "fold.json").read_text())
    assert fold["total"] == 24 and len(fold["sample_ids"]) == len(fold["predictions"]) == 24
    with open(run / "cells" / "r0_f1" / "epochs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert set(rows[0]) == {"epoch", "loss", "train_acc", "time", "samples_per_s"}
    assert summary["n_predictions"] == 48


@pytest.mark.slow
def test_resume_mid_cell_gives_identical_summary(bu3dfe_shard, tmp_path, monkeypatch):
    straight = run_campaign(tiny(bu3dfe_shard, tmp_path / "a"))

    real_save, calls = engine.save_checkpoint, []

    def crash_after_first_epoch_of_second_cell(state, path):
        real_save(state, path)
        calls.append(str(path))
        if "r0_f1" in str(path):
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", crash_after_first_epoch_of_second_cell)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(tiny(bu3dfe_shard, tmp_path / "b"))
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    assert torch.load(tmp_path / "b/cells/r0_f1/checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "b/cells/r0_f1/fold.json").exists()
    # The disturbed global RNG must not matter: the checkpoint restores it.
    torch.manual_seed(999)
    resumed = run_campaign(tiny(bu3dfe_shard, tmp_path / "b", resume=True))
    assert resumed == straight
    for cell in ("r0_f0", "r0_f1"):
        a = json.loads((tmp_path / "a/cells" / cell / "fold.json").read_text())
        b = json.loads((tmp_path / "b/cells" / cell / "fold.json").read_text())
        assert a == b
    with open(tmp_path / "b/cells/r0_f1/epochs.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]


@pytest.mark.slow
def test_nan_loss_stops_cell_and_campaign_resumes(bu3dfe_shard, tmp_path, monkeypatch):
    calls = []
    real = engine.compute_loss

    def nan_from_second_step(logits, labels):
        calls.append(1)
        loss = real(logits, labels)
        return loss * float("nan") if len(calls) > 1 else loss

    monkeypatch.setattr(engine, "compute_loss", nan_from_second_step)
    cfg = tiny(bu3dfe_shard, tmp_path / "run", epochs=2)
    with pytest.raises(DivergedError, match=r"repeat 0, fold 0, epoch 2: loss is nan") as err:
        run_campaign(cfg)
    assert "repeat 0, fold 1, epoch 1" in str(err.value)     # the other cell ran too
    ckpt = torch.load(tmp_path / "run/cells/r0_f0/checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert not (tmp_path / "run/summary.json").exists()

    monkeypatch.setattr(engine, "compute_loss", real)
    cfg.resume = True
    summary = run_campaign(cfg)
    assert summary["n_predictions"] == 24
    with open(tmp_path / "run/cells/r0_f0/epochs.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]


def test_rerun_without_resume_is_refused(bu3dfe_shard, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run/config.json").write_text(json.dumps({"config": {"variant": "afnet_m"}}))
    with pytest.raises(FileExistsError, match="pass --resume"):
        engine.prepare_campaign(tiny(bu3dfe_shard, tmp_path / "run"))
