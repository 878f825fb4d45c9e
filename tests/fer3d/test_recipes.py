"""Recipes: the shipped paper files load for both datasets, say where they fill the paper's
gaps, and bad recipe files are refused with the file named."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from fer3d.errors import ConfigError
from fer3d.paper.recipes import PAPER, paper_differences, recipe_values
from fer3d.settings import RECIPE_KEYS


@pytest.mark.parametrize("dataset", ["bu3dfe", "bosphorus"])
def test_paper_recipe_holds_the_papers_settings(dataset):
    values = recipe_values("paper", dataset)
    assert values["preset"] == dataset
    assert {k: values[k] for k in PAPER} == PAPER
    assert set(values) <= set(RECIPE_KEYS)


def test_recipe_keys_are_train_config_fields():
    """Every recipe key but head_init (wired by fer3d-train) is a TrainConfig field."""
    from fer3d.settings import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RECIPE_KEYS) - fields <= {"head_init"}


def test_paper_recipe_differs_only_where_the_paper_is_silent():
    lines = paper_differences(recipe_values("paper", "bu3dfe"), "bu3dfe")
    assert lines == [
        "batch_size: 32 (our choice: the paper gives no batch size)",
        "epochs: 30 (our choice: the paper gives no epoch count)",
        "augment: True (our choice: the paper describes no augmentation)",
        "val_subjects: 0 (our choice: the paper describes no validation split)",
    ]


def test_changed_settings_are_named():
    values = {**recipe_values("paper", "bosphorus"), "repeats": 2, "lr": 1e-3,
              "pretrained": None, "image_size": 64, "head_init": "identity"}
    lines = paper_differences(values, "bosphorus")
    assert "repeats: 2; the paper: 100" in lines
    assert "lr: 0.001; the paper: 0.0001" in lines
    assert "image_size: 64; the paper: 224" in lines
    assert "head_init: identity; the paper: normal" in lines
    assert any(line.startswith("pretrained: none (branches from scratch)") for line in lines)
    assert not any(line.startswith("folds") for line in lines)
    path_line = paper_differences({"pretrained": "/w/r18.pth"}, "bu3dfe")
    assert path_line == [("pretrained: /w/r18.pth; the paper: ImageNet weights (the same if "
                          "that file is torchvision's ImageNet resnet18)")]


def test_user_recipe_file_and_its_errors(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("preset: bu3dfe\nrepeats: 3\nepochs: 5\n")
    assert recipe_values(str(good), "bu3dfe") == {"preset": "bu3dfe", "repeats": 3, "epochs": 5}
    with pytest.raises(ConfigError, match=r"mine\.yaml: preset 'bu3dfe' but dataset"):
        recipe_values(str(good), "bosphorus")
    bad = tmp_path / "bad.yaml"
    bad.write_text("repeat: 3\nbatchsize: 8\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown setting 'repeat' "
                                             r"\(did you mean 'repeats'\?\).*'batch_size'"):
        recipe_values(str(bad), "bu3dfe")
    with pytest.raises(ConfigError, match="no such recipe file"):
        recipe_values(str(tmp_path / "missing.yaml"), "bu3dfe")
    with pytest.raises(ConfigError, match="unknown recipe 'fast'"):
        recipe_values("fast", "bu3dfe")


def test_recipes_catalog_and_reporting_never_import_torch():
    code = ("import sys; from fer3d.paper.recipes import recipe_values, paper_differences; "
            "import fer3d.paper.catalog, fer3d.report, fer3d.paper.reproduce, fer3d.cli.reproduce; "
            "recipe_values('paper', 'bosphorus'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
