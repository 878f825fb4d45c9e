"""fer3d-train / fer3d-eval: option handling, clear errors before training, a full disk,
--summarize, TensorBoard, eval of a run."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fer3d.campaign import atomic
from fer3d.cli import eval as eval_cli
from fer3d.cli import train as train_cli
from fer3d_data.schema import FORMAT_VERSION

TINY = ["--folds", "2", "--subjects", "2", "--epochs", "1", "--batch-size", "12",
        "--image-size", "32", "--workers", "0", "--no-progress", "--lr", "1e-3"]


def _fail(main, argv, capsys, code=2) -> str:
    assert main(argv) == code
    return capsys.readouterr().err


def _params(argv: list[str]) -> dict:
    return train_cli.train_command.make_context("fer3d-train", list(argv)).params


def test_defaults_and_config_file_then_flags(tmp_path):
    p = _params(["x.h5"])
    assert (p["variant"], p["repeats"], p["folds"], p["epochs"], p["batch_size"], p["lr"],
            p["image_size"], p["amp"], p["channels_last"], p["checkpoint_every"],
            p["keep"], p["executor"]) == \
        ("afnet_m", 1, 10, 30, 32, 1e-4, 224, "auto", True, None, "weights", "local")
    (tmp_path / "c.yaml").write_text("epochs: 7\nbatch-size: 4\nvariant: texture_only\n"
                                     "augment: 'false'\nresume: 'no'\n")
    p = _params(["x.h5", "--config", str(tmp_path / "c.yaml"), "--epochs", "9"])
    assert (p["epochs"], p["batch_size"], p["variant"], p["augment"], p["resume"]) == \
        (9, 4, "texture_only", False, False)


def test_config_file_errors_one_message_per_key(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({
        "epochs": 1.5, "batch_size": 0, "repeats": 0, "image_size": 100000,
        "augment": "maybe", "epoch": 3}))
    err = _fail(train_cli.main, ["x.h5", "--config", str(tmp_path / "c.json")], capsys)
    for part in ("epochs: 1.5 is not an integer", "batch_size: 0 is smaller than the minimum 2",
                 "repeats: 0 is smaller than the minimum 1",
                 "image_size: 100000 is larger than the maximum 1024",
                 "augment: 'maybe' is not a valid boolean",
                 "unknown option 'epoch' (did you mean 'epochs'?)"):
        assert part in err, part


def test_augment_false_in_a_config_file_turns_augmentation_off(bu3dfe_shard, tmp_path):
    (tmp_path / "c.yaml").write_text("augment: 'false'\nresume: 'no'\n")
    assert train_cli.main([bu3dfe_shard, *TINY, "--config", str(tmp_path / "c.yaml"),
                           "--init-only", "--out", str(tmp_path / "r")]) == 0
    saved = json.loads((tmp_path / "r/config.json").read_text())["config"]
    assert saved["augment"] is False


def test_help_without_torch():
    code = ("import sys; from fer3d.cli import eval, train; r = train.main(['--help']); "
            "e = eval.main(['--help']); assert 'torch' not in sys.modules, 'torch'; "
            "sys.exit(r or e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(Path(train_cli.__file__).parents[2])})
    assert out.returncode == 0, out.stderr
    for text in ("afnet_m_no_ma_layer234", "[auto|on|off]", "[weights|first|none|full]",
                 "[local|ray]", "[auto|bu3dfe|bosphorus|labels]", "[default: 30]"):
        assert text in " ".join(out.stdout.split()), text


def test_unknown_variant_lists_names(bu3dfe_shard, tmp_path, capsys):
    err = _fail(train_cli.main, [bu3dfe_shard, "--variant", "resnet99", "--out",
                                 str(tmp_path / "r")], capsys)
    assert "'resnet99' is not one of" in err and "afnet_m" in err
    assert not (tmp_path / "r").exists()


def test_other_schema_version(make_shard, tmp_path, capsys):
    shard = make_shard("v99.h5", format_version=99)
    err = _fail(train_cli.main, [shard, "--out", str(tmp_path / "r")], capsys)
    assert (f"v99.h5: fer3d-shard format_version 99 but this fer3d_data reads version "
            f"{FORMAT_VERSION}") in err


def test_missing_datasets(make_shard, tmp_path, capsys):
    shard = make_shard("nomask.h5", drop=("mask56", "depth"))
    err = _fail(train_cli.main, [shard, "--out", str(tmp_path / "r")], capsys)
    assert "nomask.h5: missing datasets: depth, mask56" in err


def test_too_few_subjects_for_folds(bu3dfe_shard, tmp_path, capsys):
    err = _fail(train_cli.main, [bu3dfe_shard, "--out", str(tmp_path / "r")], capsys)
    assert "10-fold cross-validation needs at least 10 subjects; the selection has 6" in err
    assert not (tmp_path / "r").exists()


def test_missing_shard_and_bad_pretrained(tmp_path, bu3dfe_shard, capsys):
    err = _fail(train_cli.main, [str(tmp_path / "none.h5"), "--out", str(tmp_path / "r")],
                capsys)
    assert "none.h5: no such shard" in err
    err = _fail(train_cli.main, [bu3dfe_shard, "--pretrained", str(tmp_path / "w.pth"),
                                 "--out", str(tmp_path / "r")], capsys)
    assert f"--pretrained: {tmp_path / 'w.pth'}: no such file" in err


def test_eval_of_a_file_that_is_no_checkpoint(bu3dfe_shard, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# fer3d\n")
    err = _fail(eval_cli.main, [str(readme), bu3dfe_shard], capsys)
    assert f"{readme}: not a PyTorch checkpoint" in err and "Traceback" not in err


def test_tensorboard_missing_is_a_clear_error(bu3dfe_shard, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    err = _fail(train_cli.main, [bu3dfe_shard, *TINY, "--tensorboard", "--out",
                                 str(tmp_path / "r")], capsys)
    assert "--tensorboard needs the 'tensorboard' package: pip install 'fer3d[tensorboard]'" in err


def test_disk_full_one_line_keeps_finished_cells_and_resumes(bu3dfe_shard, tmp_path, capsys,
                                                              monkeypatch):
    run = tmp_path / "r"
    real = atomic.json.dump

    def full_at_second_fold(obj, fh, **kw):
        if "r0_f1/fold.json" in str(fh.name):
            fh.write("{")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, fh, **kw)

    monkeypatch.setattr(atomic.json, "dump", full_at_second_fold)
    argv = [bu3dfe_shard, *TINY, "--variant", "texture_only", "--out", str(run)]
    err = _fail(train_cli.main, argv, capsys)
    # one error line (after the start-up list of settings that differ from the paper's)
    errors = [line for line in err.splitlines() if not line.startswith(("settings ", "  - "))]
    assert len(errors) == 1 and "no space left on device" in errors[0]
    assert str(run / "cells/r0_f1/fold.json") in err
    assert not list(run.rglob("*.tmp"))
    assert (run / "cells/r0_f0/fold.json").exists()
    monkeypatch.setattr(atomic.json, "dump", real)
    assert train_cli.main([*argv, "--resume"]) == 0
    assert json.loads((run / "summary.json").read_text())["n_predictions"] == 24


def test_summarize_lists_missing_cells_and_partial(bu3dfe_shard, tmp_path, capsys):
    run = tmp_path / "r"
    assert train_cli.main([bu3dfe_shard, *TINY, "--variant", "texture_only", "--cells", "1",
                           "--tensorboard", "--out", str(run)]) == 0
    capsys.readouterr()
    assert train_cli.main(["--summarize", str(run)]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 cells done" in out and "missing: 0 (r0 f0)" in out
    assert not (run / "summary.json").exists()
    assert train_cli.main(["--summarize", str(run), "--partial"]) == 0
    partial = json.loads((run / "summary.partial.json").read_text())
    assert partial["cells_done"] == 1 and partial["n_predictions"] == 12
    # TensorBoard: per-epoch scalars, the cell's test scores and its settings as HParams
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    events = EventAccumulator(str(run / "tensorboard/r0_f1"))
    events.Reload()
    assert {"loss", "test/accuracy", "test/balanced_accuracy", "test/macro_f1"} <= set(
        events.Tags()["scalars"])
    fold = json.loads((run / "cells/r0_f1/fold.json").read_text())
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(fold["accuracy"])
    start = HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["variant"].string_value == "texture_only"
    assert hparams["epochs"].number_value == 1 and hparams["pretrained"].string_value == "none"


@pytest.mark.slow
def test_train_then_eval_and_variant_checks(bu3dfe_shard, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cli.main([bu3dfe_shard, *TINY, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy over 1 repeat(s) x 2 folds:" in out and "confusion matrix" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_samples"] == 24

    ckpt = run / "cells" / "r0_f0" / "weights.pt"
    test_subjects = json.loads((run / "folds.json").read_text())["folds"][0][0]
    assert eval_cli.main([str(ckpt), bu3dfe_shard, "--out", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    fold = json.loads((run / "cells" / "r0_f0" / "fold.json").read_text())
    assert result["subjects"] == test_subjects
    assert result["predictions"] == fold["predictions"]     # same model, same samples
    assert result["accuracy"] == fold["accuracy"]
    assert result["outside_test_fold"] == []
    assert "per-class accuracy" in capsys.readouterr().out
    train_subject = sorted(set(json.loads((run / "folds.json").read_text())["folds"][0][1]))[0]
    assert eval_cli.main([str(ckpt), bu3dfe_shard, "--subjects", train_subject,
                          "--out", str(tmp_path / "t.json")]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["outside_test_fold"] == [train_subject]

    assert eval_cli.main([str(ckpt), bu3dfe_shard, "--subjects", "F0003,F0004"]) == 0
    assert "24 samples" in capsys.readouterr().out

    err = _fail(eval_cli.main, [str(ckpt), bu3dfe_shard, "--variant", "texture_only"], capsys)
    assert "checkpoint of variant 'afnet_m', but variant 'texture_only' was asked" in err
    err = _fail(train_cli.main, [bu3dfe_shard, *TINY, "--out", str(run), "--resume",
                                 "--variant", "texture_only"], capsys)
    assert "variant: run has 'afnet_m', asked 'texture_only'" in err
    # the same command resumes: a finished campaign gives the same summary without training
    weights = ckpt.stat().st_mtime_ns
    assert train_cli.main([bu3dfe_shard, *TINY, "--out", str(run)]) == 0
    assert json.loads((run / "summary.json").read_text()) == summary
    assert ckpt.stat().st_mtime_ns == weights
