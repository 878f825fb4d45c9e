"""Engine: learning on a separable shard, exact resume, NaN handling, no host sync in a
step, checkpoint policy and errors, run-dir contents, full disk."""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import os
import re
import shlex

import numpy as np
import pytest
import torch

from fer3d.campaign import atomic as runfiles
from fer3d.campaign.run import run_campaign
from fer3d.campaign.summary import summarise
from fer3d.errors import CheckpointError, ConfigError, DivergedError
from fer3d.settings import TrainConfig
from fer3d.train import checkpoint
from fer3d.train import step as engine
from fer3d.train.checkpoint import CellCheckpoints, SaveCadence, load_checkpoint
from fer3d.train.runtime import (
    AmpMode,
    cell_seed,
    cpu_bf16_supported,
    resolve_amp,
    rng_state,
    seed_everything,
    set_rng_state,
)
from fer3d_data.schema import EXPRESSIONS


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
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        resolve_amp("fp16", cpu)


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_on_cpu_follows_the_bf16_probe(monkeypatch, native):
    """oneDNN's probe patched: native bf16 kernels (AVX512-BF16/AMX) -> bf16, none -> fp32;
    a probe that says yes while autocast gives no bf16 -> fp32."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert cpu_bf16_supported() is native
    assert resolve_amp("auto", torch.device("cpu")) == AmpMode(torch.bfloat16 if native else None)
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda x, w: torch.zeros(1))
    assert resolve_amp("auto", torch.device("cpu")) == AmpMode(None)


def test_the_real_bf16_probe_agrees_with_onednn():
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert cpu_bf16_supported() is native
    assert resolve_amp("auto", torch.device("cpu")) == AmpMode(torch.bfloat16 if native else None)


@pytest.mark.parametrize("bf16, expected", [(True, AmpMode(torch.bfloat16)),
                                            (False, AmpMode(torch.float16, scaler=True))])
def test_amp_auto_on_cuda_follows_the_gpus_bf16_support(monkeypatch, bf16, expected):
    """The CUDA branch (no GPU needed: only the device's type is read); the CPU's probe,
    patched to say the opposite, must not decide."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: not bf16)
    assert resolve_amp("auto", torch.device("cuda", 1)) == expected
    assert resolve_amp("fp16", torch.device("cuda")) == AmpMode(torch.float16, scaler=True)


def test_device_follows_torchrun_local_rank(monkeypatch):
    from fer3d.train.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 3)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_rng_state_roundtrip_through_weights_only(tmp_path):
    seed_everything(3)
    state = rng_state(torch.device("cpu"))
    checkpoint.save({"rng": state, "model": {}, "variant": "x"}, tmp_path / "c.pt")
    first = (torch.rand(2), np.random.rand(), __import__("random").random())
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"], torch.device("cpu"))
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
    s = summarise(recs, 2, list(EXPRESSIONS))
    assert s["repeat_accuracies"] == [0.75, 0.75]
    assert s["accuracy_mean"] == 0.75 and s["accuracy_spread"] == 0.0
    assert s["accuracy_spread_name"] == "std over repeats"
    assert s["per_class_accuracy"]["anger"] == 0.5
    assert s["per_class_accuracy"]["fear"] == 0.75
    assert np.isnan(s["per_class_accuracy"]["happiness"])
    assert np.array(s["confusion_matrix"]).sum() == 8


def test_one_repeat_spreads_over_its_folds():
    """One repeat has no spread over repeats: the std of its fold accuracies, so named (it
    was 0.00 in fer3d-train's line and 8.84 in the report's); a single cell has none."""
    recs = [{"repeat": 0, "fold": f, "variant": "v", "labels": [0, 1], "predictions": p,
             "correct": c, "total": 2} for f, (p, c) in enumerate([([0, 1], 2), ([0, 0], 1)])]
    s = summarise(recs, 1, ["a", "b"])
    assert s["accuracy_spread"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert s["accuracy_spread_name"] == "std over folds"
    assert summarise(recs[:1], 1, ["a", "b"])["accuracy_spread"] is None


@pytest.mark.parametrize("bad, message", [
    ({"epochs": 0}, "epochs: 0 is smaller than the minimum 1"),
    ({"epochs": -1}, "epochs: -1 is smaller than the minimum 1"),
    ({"epochs": 1.5}, "epochs: 1.5 is not an integer"),
    ({"batch_size": 0}, "batch_size: 0 is smaller than the minimum 2"),
    ({"repeats": 0}, "repeats: 0 is smaller than the minimum 1"),
    ({"image_size": 100000}, "image_size: 100000 is larger than the maximum 1024"),
    ({"image_size": 30}, "image_size: 30 is not a multiple of 4"),
    ({"augment": "maybe"}, "augment: 'maybe' is not a boolean"),
    ({"lr": 0}, "lr: 0.0 must be > 0.0"),
    ({"variant": "resnet99"}, "variant: 'resnet99' is not one of"),
])
def test_bad_settings_fail_before_anything_runs(bu3dfe_shard, tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        run_campaign(tiny(bu3dfe_shard, tmp_path / "run", **bad))
    assert not (tmp_path / "run").exists()


def test_every_bad_key_in_one_message(bu3dfe_shard, tmp_path):
    with pytest.raises(ConfigError) as err:
        run_campaign(tiny(bu3dfe_shard, tmp_path / "run", epochs=0, batch_size=0, repeats=0))
    assert str(err.value).count(";") == 2


def test_strings_become_booleans_and_numbers(bu3dfe_shard, tmp_path):
    cfg = tiny(bu3dfe_shard, tmp_path, augment="false", resume="no", epochs="3")
    assert (cfg.augment, cfg.resume, cfg.epochs) == (False, False, 3)


def test_image_size_beyond_the_grid_warns(bu3dfe_shard, tmp_path, caplog):
    run_campaign(tiny(bu3dfe_shard, tmp_path / "run", image_size=48, init_only=True))
    assert "--image-size 48 is larger than the shards' 32 px grid" in caplog.text


# --------------------------------------------------------------------------- training

@pytest.mark.slow
def test_learns_separable_shard(make_shard, tmp_path):
    # lr 1e-3 over 3 epochs (2 steps each) left BatchNorm's running statistics and the
    # margin to the CPU's float results (0.54 on an AVX512-BF16 CPU); 3e-4 over 8 epochs in
    # fp32 learns on every seed tried (0.67-1.0; seed 0: 1.0)
    shard = make_shard("learn.h5", n_subjects=4, size=32)
    summary = run_campaign(tiny(shard, tmp_path / "run", subjects=4, epochs=8, lr=3e-4,
                                amp="off"))
    assert summary["accuracy_mean"] >= 0.6
    run = tmp_path / "run"
    for name in ("config.json", "folds.json", "summary.json", "confusion.png"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert set(cfg["versions"]) >= {"fer3d", "torch", "torchvision", "numpy", "h5py",
                                    "python", "device", "cpu_capability"}
    fold = json.loads((run / "cells" / "r0_f1" / "fold.json").read_text())
    assert fold["total"] == 24 and len(fold["sample_ids"]) == len(fold["predictions"]) == 24
    with open(run / "cells" / "r0_f1" / "epochs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, 9)]
    assert set(rows[0]) == {"epoch", "loss", "train_acc", "time", "samples_per_s"}
    assert summary["n_predictions"] == 48
    logits = np.load(run / "cells" / "r0_f1" / "logits.npz")
    assert logits["logits"].shape == (24, 6) and logits["logits"].dtype == np.float32
    assert logits["sample_ids"].tolist() == fold["sample_ids"]
    assert (logits["logits"].argmax(1) == fold["predictions"]).all()


@pytest.mark.slow
def test_resume_mid_cell_gives_identical_summary(bu3dfe_shard, tmp_path, monkeypatch):
    straight = run_campaign(tiny(bu3dfe_shard, tmp_path / "a", checkpoint_every=1))
    real_save = CellCheckpoints.save_resume

    def crash_after_first_epoch_of_second_cell(self, state):
        real_save(self, state)
        if "r0_f1" in str(self.resume_path):
            raise KeyboardInterrupt

    monkeypatch.setattr(CellCheckpoints, "save_resume", crash_after_first_epoch_of_second_cell)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(tiny(bu3dfe_shard, tmp_path / "b", checkpoint_every=1))
    monkeypatch.setattr(CellCheckpoints, "save_resume", real_save)
    assert torch.load(tmp_path / "b/cells/r0_f1/checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "b/cells/r0_f1/fold.json").exists()
    # The disturbed global RNG must not matter: the checkpoint restores it.
    torch.manual_seed(999)
    resumed = run_campaign(tiny(bu3dfe_shard, tmp_path / "b", resume=True, checkpoint_every=1))
    assert resumed == straight
    for cell in ("r0_f0", "r0_f1"):
        a = json.loads((tmp_path / "a/cells" / cell / "fold.json").read_text())
        b = json.loads((tmp_path / "b/cells" / cell / "fold.json").read_text())
        assert a == b
        assert not (tmp_path / "b/cells" / cell / "checkpoint.pt").exists()
    with open(tmp_path / "b/cells/r0_f1/epochs.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]


def test_resume_trains_only_what_is_unfinished(bu3dfe_shard, tmp_path, monkeypatch):
    """Counts what runs: after an interrupt in the second cell's second epoch, a resume
    trains that epoch only, not the finished first cell (comparing summaries cannot tell:
    a full retrain reproduces them)."""
    import fer3d.campaign.run as campaign
    import fer3d.train.packed as packed

    cells, epochs = [], []
    real_cells, real_epoch, real_save = (campaign.train_cells, packed.train_epoch,
                                         CellCheckpoints.save_resume)
    monkeypatch.setattr(campaign, "train_cells", lambda run, todo: (
        cells.extend(todo), real_cells(run, todo))[1])
    monkeypatch.setattr(packed, "train_epoch", lambda *a, **k: (
        epochs.append(1), real_epoch(*a, **k))[1])

    def interrupt_after_first_epoch_of_second_cell(self, state):
        real_save(self, state)
        if "r0_f1" in str(self.resume_path):
            raise KeyboardInterrupt

    cfg = tiny(bu3dfe_shard, tmp_path / "run", variant="texture_only", checkpoint_every=1)
    monkeypatch.setattr(CellCheckpoints, "save_resume", interrupt_after_first_epoch_of_second_cell)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(cfg)
    monkeypatch.setattr(CellCheckpoints, "save_resume", real_save)
    assert cells == [(0, 0), (0, 1)] and len(epochs) == 3
    finished = (tmp_path / "run/cells/r0_f0/fold.json").stat()
    cells.clear(), epochs.clear()
    run_campaign(dataclasses.replace(cfg, resume=True))
    assert cells == [(0, 1)] and len(epochs) == 1            # its second epoch only
    again = (tmp_path / "run/cells/r0_f0/fold.json").stat()
    assert (again.st_ino, again.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns)


@pytest.mark.slow
def test_nan_loss_stops_cell_and_campaign_resumes(bu3dfe_shard, tmp_path, monkeypatch):
    calls = []
    real = engine.compute_loss

    def nan_from_second_step(logits, labels, cells=1):
        calls.append(1)
        loss = real(logits, labels, cells)
        return loss * float("nan") if len(calls) > 1 else loss

    monkeypatch.setattr(engine, "compute_loss", nan_from_second_step)
    cfg = tiny(bu3dfe_shard, tmp_path / "run", epochs=2, checkpoint_every=1)
    with pytest.raises(DivergedError, match=r"repeat 0, fold 0, epoch 2: loss is nan") as err:
        run_campaign(cfg)
    assert "repeat 0, fold 1, epoch 1" in str(err.value)     # the other cell ran too
    ckpt = torch.load(tmp_path / "run/cells/r0_f0/checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert not (tmp_path / "run/summary.json").exists()

    monkeypatch.setattr(engine, "compute_loss", real)
    summary = run_campaign(tiny(bu3dfe_shard, tmp_path / "run", epochs=2, resume=True))
    assert summary["n_predictions"] == 24
    with open(tmp_path / "run/cells/r0_f0/epochs.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]


def test_rerun_attaches_and_resume_needs_a_run(bu3dfe_shard, tmp_path, caplog):
    """Resuming is the default: the same settings attach without --resume; --resume only
    refuses to start a new run (a mistyped --out)."""
    caplog.set_level("INFO")
    run_campaign(tiny(bu3dfe_shard, tmp_path / "run", init_only=True))
    run_campaign(tiny(bu3dfe_shard, tmp_path / "run", init_only=True))
    assert any("resuming the run there: 0 of 2 cells done" in r.message for r in caplog.records)
    with pytest.raises(ConfigError, match="--resume: .*typo holds no run to resume"):
        run_campaign(tiny(bu3dfe_shard, tmp_path / "typo", resume=True))
    assert not (tmp_path / "typo").exists()


# --------------------------------------------------------------------------- checkpoints

def test_finished_cell_keeps_fp32_weights_only(bu3dfe_shard, tmp_path, caplog):
    caplog.set_level("INFO")
    run_campaign(tiny(bu3dfe_shard, tmp_path / "run", epochs=2, variant="texture_only",
                      checkpoint_every=1))
    # the cost is known after the first steady-state epoch (the first has the warm-up): an
    # ETA over the epochs left, once per process
    eta = [r.message for r in caplog.records if "steady-state epoch:" in r.message]
    assert len(eta) == 1 and eta[0].startswith("r0 f0 ")
    assert "2 more epoch(s) in 1 cell(s)" in eta[0]
    assert "ETA" in eta[0]
    cell = tmp_path / "run/cells/r0_f0"
    assert sorted(p.name for p in cell.iterdir()) == ["epochs.csv", "fold.json", "logits.npz",
                                                      "weights.pt"]
    ckpt = load_checkpoint(cell / "weights.pt", "texture_only")
    assert "optimizer" not in ckpt and "rng" not in ckpt
    assert all(v.dtype in (torch.float32, torch.int64) for v in ckpt["model"].values())
    fp32 = checkpoint.state_bytes(ckpt["model"])
    assert (cell / "weights.pt").stat().st_size <= fp32 * 1.02 + 64 * 1024
    assert ckpt["test_subjects"] and ckpt["image_size"] == 32


@pytest.mark.parametrize("keep, files", [("none", set()),
                                         ("full", {"weights.pt", "checkpoint.pt"})])
def test_keep_policy(bu3dfe_shard, tmp_path, keep, files):
    run_campaign(tiny(bu3dfe_shard, tmp_path / "run", epochs=1, variant="texture_only",
                      keep=keep, cells="0"))
    assert {p.name for p in (tmp_path / "run/cells/r0_f0").glob("*.pt")} == files


def test_auto_checkpoint_cadence_keeps_saving_under_5_percent():
    nbytes = 4 * 10 ** 6                         # 4 MB: ~60 ms at the assumed 200 MB/s
    ck = SaveCadence(None)
    assert not ck.due(1, 0.1, nbytes)            # 0.1 s of training: saving would dominate
    assert ck.due(2, 2.0, nbytes)                # 2.1 s: a 60 ms save is under 5 %
    ck.saved(1.0)                                # measured: 1 s per save
    assert not ck.due(3, 10.0, nbytes) and ck.due(4, 10.0, nbytes)
    fixed = SaveCadence(2)
    assert [fixed.due(e, 0.0, nbytes) for e in (1, 2, 3, 4)] == [False, True, False, True]
    assert not SaveCadence(0).due(1, 1e9, nbytes)


def _truncated(path):
    checkpoint.save({"model": {"w": torch.zeros(1000)}, "variant": "afnet_m"}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.write_bytes(b""), "empty file (0 bytes): not a checkpoint"),
    (_truncated, "truncated checkpoint"),
    (lambda p: p.write_text("# README\nnot a model\n"), "not a PyTorch checkpoint"),
    (lambda p: torch.save({"weights": 1}, p), "not a fer3d checkpoint"),
    (lambda p: None, "no such file"),
])
def test_checkpoint_load_errors_name_file_and_problem(tmp_path, make, problem):
    path = tmp_path / "ckpt.pt"
    make(path)
    with pytest.raises(CheckpointError, match=re.escape(problem)) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ")


class _Hostile:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_a_hostile_pickle_never_runs(tmp_path):
    """A well-formed torch.save archive of a checkpoint that would run code when unpickled:
    every reader refuses it in one line naming the file, and the code does not run."""
    marker, path = tmp_path / "code-ran", tmp_path / "hostile.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "variant": "texture_only",
                "extra": _Hostile(marker)}, path)
    for load in (load_checkpoint, checkpoint.load_model):
        with pytest.raises(CheckpointError) as err:
            load(path)
        assert not marker.exists()
        assert str(err.value) == (f"{path}: refused: unpickling it would import posix.system "
                                  "(only tensors and plain types are loaded; nothing in the "
                                  "file was run)")
    torch.load(path, weights_only=False)  # the file is really hostile: a plain load runs it
    assert marker.exists()


def test_disk_full_leaves_no_temp_file(tmp_path, monkeypatch):
    def full(obj, fh, **kw):
        fh.write("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runfiles.json, "dump", full)
    with pytest.raises(OSError) as err:
        runfiles.write_json({"a": 1}, tmp_path / "x.json")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []
