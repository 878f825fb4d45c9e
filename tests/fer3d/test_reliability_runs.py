"""No wrong run is reused or accepted, and the first hour of a new user (issue 15): a run of
other settings or shards is refused naming the difference (fer3d-train and fer3d-reproduce
alike), a preset of another dataset is refused, --cells and Slurm's environment are checked,
Ctrl-C exits 130 and the same command resumes, --keep reaches every way of setting it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_runs import write_run

from fer3d.campaign import protocol
from fer3d.campaign.plan import parse_cells
from fer3d.campaign.run import Context, run_campaign
from fer3d.campaign.rundir import CellDir
from fer3d.cli import train as train_cli
from fer3d.cli.reproduce import reproduce_command
from fer3d.errors import ConfigError, PlanError
from fer3d.paper import reproduce as rep
from fer3d.settings import TrainConfig
from fer3d.train.checkpoint import CellCheckpoints
from fer3d_data.shard_index import read_shard_index

TINY = ["--folds", "2", "--subjects", "2", "--epochs", "1", "--batch-size", "12",
        "--image-size", "32", "--workers", "0", "--no-progress", "--lr", "1e-3",
        "--variant", "texture_only"]
SMALL = ["--repeats", "1", "--folds", "2", "--epochs", "1", "--image-size", "32",
         "--subjects", "2", "--batch-size", "12", "--pretrained", "none", "--workers", "0",
         "--no-progress"]


def _error(main, argv, capsys) -> str:
    """Exit 2 and the last stderr line (the error), no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


# --------------------------------------------------------------------------- runs of other settings

def test_train_attach_refuses_other_shard_config_and_samples(make_shard, tmp_path, capsys):
    """--resume (or the same command) on shards prepared with another config, or holding
    other samples, is refused naming it; the same shards elsewhere attach."""
    a = make_shard("a.h5", n_subjects=2, config={"image_size": 32, "depth_dtype": "float32"})
    f16 = make_shard("f16.h5", n_subjects=2, config={"image_size": 32, "depth_dtype": "float16"})
    other = make_shard("other.h5", n_subjects=2, first_subject=2,
                       config={"image_size": 32, "depth_dtype": "float32"})
    run = tmp_path / "run"
    assert train_cli.main([a, *TINY, "--out", str(run), "--init-only"]) == 0
    shards = json.loads((run / "config.json").read_text())["shards"]
    assert shards["config"] == {"image_size": 32, "depth_dtype": "float32"}
    assert shards["samples"] == 38 and len(shards["digest"]) == 64
    line = _error(train_cli.main, [f16, *TINY, "--out", str(run), "--resume"], capsys)
    assert line.endswith(f"{run}: holds a run of other settings (shard config depth_dtype: run "
                         "has 'float32', asked 'float16'); give the run's settings to resume "
                         "it, or another --out")
    line = _error(train_cli.main, [other, *TINY, "--out", str(run), "--resume"], capsys)
    assert "(shards: other samples (the run's held 38, these 38; the digest of their /config " \
           "and /index differs))" in line
    moved = shutil.copy(a, tmp_path / "moved.h5")
    assert train_cli.main([str(moved), *TINY, "--out", str(run), "--resume", "--init-only"]) == 0


def test_train_attach_refuses_other_settings_naming_each(bu3dfe_shard, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cli.main([bu3dfe_shard, *TINY, "--out", str(run), "--init-only"]) == 0
    line = _error(train_cli.main, [bu3dfe_shard, *TINY, "--out", str(run), "--epochs", "3",
                                   "--image-size", "64"], capsys)
    assert "(epochs: run has 1, asked 3; image_size: run has 32, asked 64)" in line


def test_reproduce_never_reuses_a_run_of_other_settings(bu3dfe_shard, tmp_path, caplog):
    """Before: a finished run with the asked repeats was reused whatever its settings (a
    1-epoch 32-px run reported for epochs 3). Now the engine's check refuses it."""
    values = rep.campaign_values("paper", "bu3dfe", {
        "repeats": 1, "folds": 2, "epochs": 1, "image_size": 32, "subjects": 2,
        "batch_size": 12, "pretrained": "none"})
    run = tmp_path / "runs" / "bu3dfe" / "afnet_m"
    cfg = rep.train_config(values, [bu3dfe_shard], run, "afnet_m")
    run_campaign(dataclasses.replace(cfg, init_only=True, workers=0, progress=False))
    (run / "summary.json").write_text(json.dumps({"repeats": 1}))  # what tempted the reuse
    result = CliRunner().invoke(reproduce_command, ["table1", bu3dfe_shard, "-o", str(tmp_path),
                                                    *SMALL, "--epochs", "3"])
    assert result.exit_code == 2, result.output
    assert "bu3dfe afnet_m: ConfigError: " in result.output
    assert "(epochs: run has 1, asked 3)" in result.output
    assert not (run / "cells").exists() and "finished run reused" not in caplog.text


# --------------------------------------------------------------------------- presets

def test_preset_of_another_dataset_is_refused(make_shard, tmp_path, capsys):
    bu = make_shard("bu.h5", n_subjects=2)
    line = _error(train_cli.main, [bu, *TINY, "--preset", "bosphorus", "--out",
                                   str(tmp_path / "r")], capsys)
    assert line.endswith(f"--preset bosphorus: {bu}: bu3dfe scans (the shards' dataset "
                         "attribute), and preset bosphorus selects bosphorus's samples: use "
                         "--preset bu3dfe (or auto)")
    assert not (tmp_path / "r").exists()


def test_no_complete_subject_names_the_likely_cause(make_shard):
    index = read_shard_index([make_shard("x.h5", n_subjects=3)])
    cases = [
        (index.intensity != 4, "scans only at intensities [1, 3]: shards prepared with "
                               "--intensities?"),
        (index.expression != 1, "no scan of disgust: shards prepared with --expressions?"),
        (~((index.expression == 2) & (index.intensity == 3)),
         "every subject lacks some class: a --shard I/N part"),
    ]
    for keep, cause in cases:
        with pytest.raises(PlanError, match="no subject of the shards \\(3\\) has all six "
                                              "expressions at intensities 3 and 4") as err:
            protocol.select_subjects(index.take(keep), "bu3dfe")
        assert f"likely cause: {cause}" in str(err.value)
    odd = dataclasses.replace(index, datasets=("faces",))
    with pytest.raises(PlanError, match="the shards' dataset is 'faces', and preset "
                                          "'bosphorus' selects"):
        protocol.select_subjects(odd.take(odd.expression != 3), "bosphorus")


def test_subjects_left_out_are_named(make_shard, caplog):
    index = read_shard_index([make_shard("y.h5", n_subjects=3)])
    index = index.take(~((index.subject == "F0002") & (index.expression == 4)
                              & (index.intensity == 3)))
    with caplog.at_level(logging.WARNING, logger="fer3d.campaign.protocol"):
        assert protocol.select_subjects(index, "bu3dfe", 60) == ["F0001", "F0003"]
    assert "preset bu3dfe: 1 subject(s) left out, lacking samples it needs: F0002 (no " \
           "sadness 3)" in caplog.text


# --------------------------------------------------------------------------- cells, Slurm

def test_open_cell_range_runs_to_the_last_cell():
    assert parse_cells("0-", 4) == [0, 1, 2, 3] and parse_cells("2-,0", 4) == [0, 2, 3]
    for bad in ("-2", "1-2-3", "x-"):
        with pytest.raises(ConfigError, match="is not N, N-M or N- "):
            parse_cells(bad, 4)


def test_bad_slurm_environment_is_one_line(bu3dfe_shard, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "abc")
    line = _error(train_cli.main, [bu3dfe_shard, *TINY, "--out", str(tmp_path / "r")], capsys)
    assert line.endswith("SLURM_ARRAY_TASK_ID='abc' in the environment is not an integer "
                         "(Slurm and torchrun set it): unset it, or pass --task-index and "
                         "--num-tasks")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- Ctrl-C, ETA

def test_ctrl_c_exits_130_saying_rerun_resumes(bu3dfe_shard, tmp_path, capsys, monkeypatch):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr("fer3d.campaign.run.run_campaign", interrupted)
    assert train_cli.main([bu3dfe_shard, *TINY, "--out", str(tmp_path / "r")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "fer3d-train: interrupted; finished cells are kept: rerun the same command to resume")


def test_eta_from_a_steady_state_epoch_over_the_cells_left(bu3dfe_shard, tmp_path, caplog):
    cfg = TrainConfig(shards=[bu3dfe_shard], out=str(tmp_path), epochs=5)
    ctx = Context(cfg, None, None, torch.device("cpu"), None, eta_cells=3)
    caplog.set_level("INFO")
    ctx._eta(0, 0, 1, {"time": 100.0, "samples_per_s": 1.0})  # warm-up: no ETA yet
    assert "ETA" not in caplog.text
    ctx._eta(0, 0, 2, {"time": 60.0, "samples_per_s": 10.0})
    ctx._eta(0, 0, 3, {"time": 60.0, "samples_per_s": 10.0})
    etas = [r.message for r in caplog.records if "ETA" in r.message]
    # 3 epochs left in this cell + 2 cells x 5 epochs, at the second epoch's 60 s
    assert len(etas) == 1 and "13 more epoch(s) in 3 cell(s) ≈ 13.0 min" in etas[0]


@pytest.mark.slow
def test_ctrl_c_then_the_same_command_resumes(bu3dfe_shard, tmp_path):
    """The real command: SIGINT during the first cell exits 130 with the rerun line; the
    same command (no --resume) attaches, says what is done, and completes the campaign."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "fer3d.cli.train", bu3dfe_shard, *TINY, "--epochs", "4",
            "--checkpoint-every", "1", "--out", str(run)]
    env = {**os.environ, "PYTHONPATH": str(Path(train_cli.__file__).parents[2])}
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    log = run / "cells" / "r0_f0" / "epochs.csv"
    deadline = time.monotonic() + 600
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("fer3d-train: interrupted; finished cells are "
                                            "kept: rerun the same command to resume")
    assert not list((run / "claims").glob("*.claim"))
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert "resuming the run there: 0 of 2 cells done" in again.stderr
    assert "r0 f0: resuming after epoch" in again.stderr
    assert json.loads((run / "summary.json").read_text())["n_predictions"] == 24


# --------------------------------------------------------------------------- --keep

def test_keep_first_keeps_weights_of_cell_r0_f0_only(tmp_path):
    model = torch.nn.Linear(2, 2)
    for repeat, fold in ((0, 0), (0, 1), (1, 0)):
        cell = CellDir(tmp_path / f"r{repeat}_f{fold}", repeat, fold)
        cell.path.mkdir()
        CellCheckpoints(cell, "first", {"variant": "v"}).finish(model, 1, dict)
        assert cell.weights.is_file() == ((repeat, fold) == (0, 0))
        assert not cell.resume.exists()


@pytest.fixture
def fake_campaigns(monkeypatch):
    """run_campaign recording its configs and writing a run instead of training."""
    calls = []

    def run_campaign(cfg):
        calls.append(cfg)
        shutil.rmtree(cfg.out, ignore_errors=True)
        return write_run(Path(cfg.out), cfg.variant, cfg.preset, repeats=cfg.repeats,
                         folds=cfg.folds)

    monkeypatch.setattr("fer3d.campaign.run.run_campaign", run_campaign)
    return calls


def test_keep_in_reproduce_flags_config_files_and_recipes(fake_campaigns, bu3dfe_shard,
                                                          tmp_path):
    def keep(*extra) -> str:
        fake_campaigns.clear()
        result = CliRunner().invoke(reproduce_command, ["table1", bu3dfe_shard, "-o",
                                                        str(tmp_path), *SMALL, *extra])
        assert result.exit_code == 0, result.output
        return fake_campaigns[0].keep

    (tmp_path / "c.yaml").write_text("keep: full\n")
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("preset: bu3dfe\nkeep: none\n")
    assert keep() == "first"  # the reproduction's default: cell r0 f0's weights only
    assert keep("--keep", "weights") == "weights"
    assert keep("--config", str(tmp_path / "c.yaml")) == "full"
    assert keep("--recipe", str(recipe)) == "none"
    assert keep("--recipe", str(recipe), "--keep", "weights") == "weights"
