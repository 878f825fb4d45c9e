"""fer3d-train / fer3d-eval: option handling, clear errors before training, eval of a run."""

from __future__ import annotations

import json

import pytest

from fer3d import cli
from fer3d_data.schema import FORMAT_VERSION

TINY = ["--folds", "2", "--subjects", "2", "--epochs", "1", "--batch-size", "12",
        "--image-size", "32", "--workers", "0", "--no-progress", "--lr", "1e-3"]



def _fail(main, argv, capsys, code=2) -> str:
    assert main(argv) == code
    return capsys.readouterr().err


def test_defaults_and_config_file_then_flags(tmp_path):
    args = cli.parse_train_args(["x.h5"])
    assert (args.variant, args.repeats, args.folds, args.epochs, args.batch_size, args.lr,
            args.image_size, args.amp, args.channels_last) == \
        ("afnet_m", 1, 10, 30, 32, 1e-4, 224, "auto", True)
    (tmp_path / "c.yaml").write_text("epochs: 7\nbatch-size: 4\nvariant: texture_only\n")
    args = cli.parse_train_args(["x.h5", "--config", str(tmp_path / "c.yaml"), "--epochs", "9"])
    assert (args.epochs, args.batch_size, args.variant) == (9, 4, "texture_only")
    (tmp_path / "c.json").write_text(json.dumps({"no_such_option": 1}))
    with pytest.raises(SystemExit):
        cli.parse_train_args(["x.h5", "--config", str(tmp_path / "c.json")])


def test_unknown_variant_lists_names(bu3dfe_shard, tmp_path, capsys):
    err = _fail(cli.train_main, [bu3dfe_shard, "--variant", "resnet99", "--out",
                                 str(tmp_path / "r")], capsys)
    assert "unknown variant 'resnet99'; available:" in err and "afnet_m" in err
    assert not (tmp_path / "r").exists()


def test_other_schema_version(make_shard, tmp_path, capsys):
    other = FORMAT_VERSION + 1
    shard = make_shard("other.h5", format_version=other)
    err = _fail(cli.train_main, [shard, "--out", str(tmp_path / "r")], capsys)
    assert f"other.h5: shard format_version {other}; this fer3d reads version {FORMAT_VERSION}" in err


def test_missing_datasets(make_shard, tmp_path, capsys):
    shard = make_shard("nomask.h5", drop=("mask56", "depth"))
    err = _fail(cli.train_main, [shard, "--out", str(tmp_path / "r")], capsys)
    assert "nomask.h5: missing datasets: depth, mask56" in err


def test_too_few_subjects_for_folds(bu3dfe_shard, tmp_path, capsys):
    err = _fail(cli.train_main, [bu3dfe_shard, "--out", str(tmp_path / "r")], capsys)
    assert "10-fold cross-validation needs at least 10 subjects; the selection has 6" in err
    assert not (tmp_path / "r").exists()


def test_missing_shard_and_bad_pretrained(tmp_path, bu3dfe_shard, capsys):
    err = _fail(cli.train_main, [str(tmp_path / "none.h5"), "--out", str(tmp_path / "r")],
                capsys)
    assert "none.h5: no such shard" in err
    err = _fail(cli.train_main, [bu3dfe_shard, "--pretrained", str(tmp_path / "w.pth"),
                                 "--out", str(tmp_path / "r")], capsys)
    assert "w.pth: no such resnet18 state dict file" in err


@pytest.mark.slow
def test_train_then_eval_and_variant_checks(bu3dfe_shard, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.train_main([bu3dfe_shard, *TINY, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy over 1 repeat(s) x 2 folds:" in out and "confusion matrix" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_samples"] == 24

    ckpt = run / "cells" / "r0_f0" / "checkpoint.pt"
    test_subjects = json.loads((run / "folds.json").read_text())["folds"][0][0]
    assert cli.eval_main([str(ckpt), bu3dfe_shard, "--out", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    fold = json.loads((run / "cells" / "r0_f0" / "fold.json").read_text())
    assert result["subjects"] == test_subjects
    assert result["predictions"] == fold["predictions"]     # same model, same samples
    assert result["accuracy"] == fold["accuracy"]
    assert result["outside_test_fold"] == []
    assert "per-class accuracy" in capsys.readouterr().out
    train_subject = sorted(set(json.loads((run / "folds.json").read_text())["folds"][0][1]))[0]
    assert cli.eval_main([str(ckpt), bu3dfe_shard, "--subjects", train_subject,
                          "--out", str(tmp_path / "t.json")]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["outside_test_fold"] == [train_subject]

    assert cli.eval_main([str(ckpt), bu3dfe_shard, "--subjects", "F0003", "F0004"]) == 0
    assert "24 samples" in capsys.readouterr().out

    err = _fail(cli.eval_main, [str(ckpt), bu3dfe_shard, "--variant", "texture_only"], capsys)
    assert "checkpoint of variant 'afnet_m', but variant 'texture_only' was asked" in err
    err = _fail(cli.train_main, [bu3dfe_shard, *TINY, "--out", str(run), "--resume",
                                 "--variant", "texture_only"], capsys)
    assert "its checkpoints are of variant 'afnet_m', asked 'texture_only'" in err
    err = _fail(cli.train_main, [bu3dfe_shard, *TINY, "--out", str(run)], capsys)
    assert "already holds a run; pass --resume" in err
    # a finished campaign resumes to the same summary without training
    assert cli.train_main([bu3dfe_shard, *TINY, "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "summary.json").read_text()) == summary
