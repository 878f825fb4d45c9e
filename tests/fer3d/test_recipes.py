"""Recipes: the shipped paper files load for both datasets, mark each value paper, standard
protocol of the paper's references, or ours (in the files and at run time, the precision
included), and bad recipe files are refused with the file named."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from fer3d.errors import ConfigError
from fer3d.paper.recipes import PAPER, paper_differences, recipe_path, recipe_values
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
    lines = paper_differences(recipe_values("paper", "bu3dfe"), "bu3dfe", "bfloat16")
    assert lines == [
        "preset: bu3dfe (standard protocol of the paper's references: the six expressions at "
        "the two highest intensities (3 and 4); the paper does not say which)",
        "folds: subject-independent (standard protocol of the paper's references: all of a "
        "subject's samples in one fold)",
        "batch_size: 32 (ours: the paper gives no batch size)",
        "epochs: 30 (ours: the paper gives no epoch count)",
        "augment: True (ours: the paper describes no augmentation)",
        "val_subjects: 0 (ours: the paper describes no validation split)",
        "seed: 0 (ours: which subjects and folds: the paper draws them at random and does not "
        "list them)",
        "precision: bfloat16 autocast (ours: the paper states no precision; --amp off trains "
        "in fp32)",
    ]
    bos = paper_differences(recipe_values("paper", "bosphorus"), "bosphorus", "off")
    assert bos[0].startswith("preset: bosphorus (standard protocol of the paper's references: "
                             "one scan per subject and emotion")
    assert not any(line.startswith("precision") for line in bos)
    fp16 = paper_differences({}, "bu3dfe", "float16")
    assert fp16 == ["precision: float16 autocast with loss scaling (ours: the paper states no "
                    "precision; --amp off trains in fp32)"]


@pytest.mark.parametrize("dataset", ["bu3dfe", "bosphorus"])
def test_recipe_files_mark_where_each_value_comes_from(dataset):
    """A value's comment block says "paper:" only for what the paper states; the intensities,
    the one scan per emotion and subject-independence are the references' protocol."""
    text = recipe_path("paper", dataset).read_text(encoding="utf-8")
    blocks, comments = {}, []
    for line in text.splitlines():
        if line.startswith("#"):
            comments.append(line.lstrip("# "))
        elif ":" in line:
            blocks[line.split(":")[0]] = " ".join(comments)
            comments = []
    refs = "standard protocol of the paper's references"
    paper_part, refs_part = blocks["subjects"].split(refs)
    assert paper_part.startswith("paper: 60 subjects")
    assert ("two highest intensities, 3 and 4" if dataset == "bu3dfe"
            else "one scan per emotion") in refs_part
    paper_part, refs_part = blocks["folds"].split(refs)
    assert "subject-independent" in refs_part and "subject-independent" not in paper_part
    for key in ("batch_size", "epochs", "augment", "val_subjects", "seed"):
        assert blocks[key].startswith("ours:"), key
    for key in ("image_size", "lr", "pretrained", "head_init"):
        assert blocks[key].startswith("paper:"), key
    assert "ours: its std" in blocks["head_init"]
    assert "ours, not a recipe setting: mixed precision" in " ".join(comments)


def test_changed_settings_are_named():
    values = {**recipe_values("paper", "bosphorus"), "repeats": 2, "lr": 1e-3,
              "pretrained": None, "image_size": 64, "head_init": "identity"}
    lines = paper_differences(values, "bosphorus")
    assert "repeats: 2 (ours; the paper: 100)" in lines
    assert "lr: 0.001 (ours; the paper: 0.0001)" in lines
    assert "image_size: 64 (ours; the paper: 224)" in lines
    assert "head_init: identity (ours; the paper: normal)" in lines
    assert "pretrained: none (branches from scratch) (ours; the paper: ImageNet)" in lines
    assert not any(line.startswith("folds: 10") for line in lines)
    path_line = paper_differences({"pretrained": "/w/r18.pth"}, "bu3dfe")
    assert path_line == [("pretrained: /w/r18.pth (ours; the paper: ImageNet weights, the same "
                          "if that file is torchvision's ImageNet resnet18)")]
    assert paper_differences({"preset": "bu3dfe"}, "bosphorus") == [
        "preset: bu3dfe (ours; the paper's bosphorus selection is preset bosphorus)"]


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
