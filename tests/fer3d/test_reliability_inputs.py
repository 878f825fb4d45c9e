"""Bad input to the training side is one line naming the file and what to do (issue 15): a
corrupt chunk in a shard, broken or crafted weights files (--pretrained, fer3d-eval), output
paths that cannot be written (checked before any work), a raw folder given as a shard, a
mistyped subject, a broken run directory in fer3d-report, a folder of runs."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import h5py
import pytest
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from crafted import crafted_files
from fake_runs import write_run

from fer3d.cli import eval as eval_cli
from fer3d.cli import report as report_cli
from fer3d.cli import train as train_cli
from fer3d.errors import ShardReadError
from fer3d.models import create_model
from fer3d.train.dataset import ShardDataset
from fer3d_data.shard_index import read_shard_index

TINY = ["--folds", "2", "--subjects", "2", "--epochs", "1", "--batch-size", "12",
        "--image-size", "32", "--workers", "0", "--no-progress"]


def _one_line(main, argv, capsys, code=2) -> str:
    """The command's exit code is ``code`` and its error is one line (after the start-up
    list of settings that differ from the paper's), without a traceback; that line."""
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("settings ", "  - "))
             and " fer3d." not in x[:20]]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "weights_only" not in err
    return lines[0]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    torch.manual_seed(0)
    return crafted_files(tmp_path_factory.mktemp("crafted"), torchvision.models.resnet18()
                         .state_dict())


# --------------------------------------------------------------------------- corrupt chunk

def corrupt_depth_chunk(shard: str, row: int) -> str:
    """Rewrite /depth with Fletcher-32 checksums (as fer3d-prep writes it) and flip bytes
    inside the chunk of ``row``: HDF5 then refuses to read that sample."""
    with h5py.File(shard, "r+") as f:
        depth = f["depth"][...]
        del f["depth"]
        f.create_dataset("depth", data=depth, chunks=(1, *depth.shape[1:]), fletcher32=True)
        offset = f["depth"].id.get_chunk_info(row).byte_offset
    with open(shard, "r+b") as fh:
        fh.seek(offset + 100)
        fh.write(b"\xff" * 8)
    return shard


@pytest.fixture(scope="module")
def corrupt_shard(shard_factory):
    return corrupt_depth_chunk(shard_factory("corrupt.h5", n_subjects=2, size=32), 4)


def test_corrupt_chunk_names_shard_sample_and_verify(corrupt_shard):
    index = read_shard_index([corrupt_shard])
    ds = ShardDataset(index, image_size=32)
    ds.read(3)  # its neighbours read
    with pytest.raises(ShardReadError) as err:
        ds.read(4)
    sample = str(index.sample_id[4])
    assert str(err.value).startswith(f"{corrupt_shard}: sample '{sample}' (row 4) cannot be read")
    assert f"fer3d-prep verify {corrupt_shard}" in str(err.value)
    # the same one line when a DataLoader worker process hits it
    loader = torch.utils.data.DataLoader(ShardDataset(index, [4], image_size=32), num_workers=1)
    with pytest.raises(ShardReadError) as err:
        next(iter(loader))
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{corrupt_shard}: sample")


def test_corrupt_chunk_in_train_is_one_line(corrupt_shard, tmp_path, capsys):
    line = _one_line(train_cli.main, [corrupt_shard, *TINY, "--out", str(tmp_path / "r")],
                     capsys)
    assert "cannot be read" in line and "fer3d-prep verify" in line


# --------------------------------------------------------------------------- weights files

BAD_PRETRAINED = ["empty.pth", "text.pth", "truncated.pth", "foreign_zip.pth", "code.pth",
                  "tensor.pth", "plain_values.pth", "int_names.pth", "no_layer4.pth",
                  "flat_conv1.pth", "bad_header.safetensors", "huge_header.safetensors",
                  "fifo.pth", "folder.pth", "missing.pth"]


@pytest.mark.parametrize("name", BAD_PRETRAINED)
def test_bad_pretrained_file_is_one_line(crafted, name, bu3dfe_shard, tmp_path, capsys):
    line = _one_line(train_cli.main, [bu3dfe_shard, *TINY, "--pretrained", str(crafted[name]),
                                      "--out", str(tmp_path / "r")], capsys)
    assert f"--pretrained: {crafted[name]}: " in line, line
    assert not (tmp_path / "r").exists()


def test_code_in_a_weights_file_never_runs_nor_is_suggested(crafted, capsys):
    line = _one_line(eval_cli.main, [str(crafted["code.pth"]), "x.h5"], capsys)
    assert "refused: unpickling it would import" in line and "weights_only" not in line
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["empty.pth", "truncated.pth", "foreign_zip.pth", "code.pth",
                                  "tensor.pth", "int_names.pth", "variant_number.pth",
                                  "unknown_variant.pth", "image_size_text.pth",
                                  "subjects_number.pth", "seven_classes.pth",
                                  "wrong_names.pth", "bad_header.safetensors",
                                  "huge_header.safetensors"])
def test_crafted_checkpoint_in_eval_is_one_line(crafted, name, bu3dfe_shard, capsys):
    line = _one_line(eval_cli.main, [str(crafted[name]), bu3dfe_shard], capsys)
    assert str(crafted[name]) in line, line


# --------------------------------------------------------------------------- output paths

@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Untrained texture_only weights as the engine writes them."""
    path = tmp_path_factory.mktemp("weights") / "weights.pt"
    torch.save({"model": create_model("texture_only").state_dict(), "variant": "texture_only",
                "num_classes": 6, "image_size": 32, "test_subjects": ["F0001"]}, path)
    return path


def test_eval_checks_its_output_before_any_work(weights, bu3dfe_shard, tmp_path, capsys,
                                                monkeypatch):
    def never(*a, **k):
        raise AssertionError("evaluated before the output path was checked")

    monkeypatch.setattr("fer3d.predict.evaluate.evaluate_checkpoint", never)
    missing = tmp_path / "no" / "e.json"
    line = _one_line(eval_cli.main, [str(weights), bu3dfe_shard, "--out", str(missing)], capsys)
    assert line.endswith(f"--out {missing}: its folder {missing.parent} does not exist")
    line = _one_line(eval_cli.main, [str(weights), bu3dfe_shard, "--out", str(tmp_path)], capsys)
    assert line.endswith(f"--out {tmp_path}: is a folder; give a file path")


def test_train_out_that_is_a_file(bu3dfe_shard, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("x")
    line = _one_line(train_cli.main, [bu3dfe_shard, *TINY, "--out", str(out)], capsys)
    assert line.endswith(f"--out {out}: is a file, not a run directory; choose another --out")


def test_raw_folder_given_as_a_shard_says_run_prep_first(tmp_path, capsys):
    line = _one_line(train_cli.main, [str(tmp_path), *TINY], capsys)
    assert f"{tmp_path}: is a folder, not a shard" in line
    assert f"run `fer3d-prep bu3dfe {tmp_path} OUT.h5`" in line


def test_mistyped_subject_gets_did_you_mean(weights, bu3dfe_shard, capsys):
    line = _one_line(eval_cli.main, [str(weights), bu3dfe_shard, "--subjects", "F0001,F001"],
                     capsys)
    assert line.endswith("subjects not in the shards: 'F001' (did you mean 'F0001'?)")


# --------------------------------------------------------------------------- fer3d-report

def test_report_finds_runs_in_a_folder_and_skips_a_broken_one(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs / "bu3dfe" / "afnet_m", "afnet_m")
    write_run(runs / "bu3dfe" / "texture_only", "texture_only")
    broken = runs / "bu3dfe" / "depth_only"
    write_run(broken, "depth_only")
    fold = broken / "cells" / "r1_f0" / "fold.json"
    fold.write_text(json.dumps({**json.loads(fold.read_text()), "correct": "many"}))
    odd = runs / "bosphorus" / "afnet_m"
    write_run(odd, "afnet_m", "bosphorus")
    (odd / "summary.json").write_text(json.dumps({**json.loads(
        (odd / "summary.json").read_text()), "repeats": "two"}))
    listed = runs / "bosphorus" / "texture_only"
    write_run(listed, "texture_only", "bosphorus")
    (listed / "summary.json").write_text(json.dumps([1, 2]))
    assert report_cli.main([str(runs), "-o", str(tmp_path / "rep"), "--no-params"]) == 0
    err = capsys.readouterr().err
    skipped = [x for x in err.splitlines() if x.startswith("fer3d-report: skipped")]
    assert len(skipped) == 3 and "Traceback" not in err, err
    for named in (f"{odd}: ", f"{listed}: ", f"{broken / 'cells/r1_f0/fold.json'}: not a fold"):
        assert sum(named in x for x in skipped) == 1, (named, skipped)
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "2 run(s):" in report and "texture_only" in report


def test_report_out_that_is_a_file_and_a_folder_without_runs(tmp_path, capsys):
    write_run(tmp_path / "run", "afnet_m")
    (tmp_path / "out.md").write_text("x")
    line = _one_line(report_cli.main, [str(tmp_path / "run"), "-o", str(tmp_path / "out.md"),
                                       "--no-params"], capsys)
    assert line.endswith(f"--out {tmp_path / 'out.md'}: is a file, not a folder")
    (tmp_path / "empty").mkdir()
    assert report_cli.main([str(tmp_path / "empty"), "-o", str(tmp_path / "r")]) == 2
    assert f"{tmp_path / 'empty'}: no config.json; not a fer3d run directory" in \
        capsys.readouterr().err


def test_a_run_directory_that_cannot_be_written_names_the_file(bu3dfe_shard, tmp_path,
                                                               monkeypatch):
    """A read-only run directory (simulated: the test runs as root, which may write
    anywhere): the error names the run's file, not a temporary name, and leaves none."""
    from fer3d.campaign import atomic
    from fer3d.campaign.run import run_campaign
    from fer3d.settings import TrainConfig

    def read_only(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(atomic, "open", read_only, raising=False)
    run = tmp_path / "run"
    with pytest.raises(PermissionError) as err:
        run_campaign(TrainConfig(shards=[bu3dfe_shard], out=str(run), folds=2, subjects=2,
                                 image_size=32, init_only=True))
    assert err.value.filename == str(run / "folds.json")
    assert err.value.strerror == "Permission denied" and not list(run.iterdir())
