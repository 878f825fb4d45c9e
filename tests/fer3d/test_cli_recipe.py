"""fer3d-train --recipe and --head-init: recipe < --config < flags, and the start-up list of
settings that differ from the paper's."""

from __future__ import annotations

import json

from fer3d.cli import train as cli


def test_recipe_under_config_under_flags(bu3dfe_shard, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("subjects: 2\nfolds: 2\nepochs: 3\n")
    run = tmp_path / "r"
    assert cli.main([bu3dfe_shard, "--recipe", "paper", "--config", str(tmp_path / "c.yaml"),
                           "--epochs", "1", "--repeats", "2", "--image-size", "32",
                           "--pretrained", "none", "--head-init", "identity",
                           "--init-only", "--out", str(run), "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())["config"]
    # flags win over the config file, which wins over the recipe; the rest is the recipe's
    assert (saved["epochs"], saved["repeats"], saved["image_size"]) == (1, 2, 32)
    assert (saved["subjects"], saved["folds"]) == (2, 2)
    assert (saved["lr"], saved["batch_size"], saved["head_init"]) == (1e-4, 32, "identity")
    err = capsys.readouterr().err
    for line in ("repeats: 2 (ours; the paper: 100)", "image_size: 32 (ours; the paper: 224)",
                 "head_init: identity (ours; the paper: normal)", "epochs: 1 (ours:",
                 "preset: bu3dfe (standard protocol of the paper's references"):
        assert line in err, line


def test_plain_run_says_it_is_not_the_papers_setup(bu3dfe_shard, tmp_path, capsys):
    assert cli.main([bu3dfe_shard, "--subjects", "2", "--folds", "2", "--image-size", "32",
                           "--init-only", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "differ from the paper" in err
    assert "repeats: 1 (ours; the paper: 100)" in err and "pretrained: none" in err


def test_the_resolved_precision_is_listed_as_ours(bu3dfe_shard, tmp_path, capsys, monkeypatch):
    """bf16 autocast on CUDA (or on a CPU with native bf16) is our choice, said at start;
    fp32 (--amp off) is not listed."""
    import fer3d.train.runtime as runtime

    monkeypatch.setattr(runtime, "resolve_device", lambda name: runtime.torch.device("cpu"))
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    base = [bu3dfe_shard, "--subjects", "2", "--folds", "2", "--image-size", "32", "--init-only"]
    assert cli.main([*base, "--out", str(tmp_path / "a")]) == 0
    assert "precision: bfloat16 autocast (ours: the paper states no precision" in \
        capsys.readouterr().err
    assert cli.main([*base, "--amp", "off", "--out", str(tmp_path / "b")]) == 0
    assert "precision:" not in capsys.readouterr().err


def test_unknown_recipe_is_one_line(bu3dfe_shard, tmp_path, capsys):
    assert cli.main([bu3dfe_shard, "--recipe", "papr", "--init-only",
                           "--out", str(tmp_path / "r")]) == 2
    assert "unknown recipe 'papr'" in capsys.readouterr().err
