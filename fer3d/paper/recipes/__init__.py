"""Recipes: shipped, commented option files that set up a campaign as the paper did.

Stage: command lines (torch-free). Which settings a recipe may set is the settings table's
``recipe`` flag (:data:`fer3d.settings.RECIPE_KEYS`: what describes the experiment, not the
machine). ``paper-bu3dfe.yaml`` and ``paper-bosphorus.yaml`` hold
fer3d-train option values (keys with underscores): what the paper states, and our choices
where it is silent, each said so in the file. :func:`recipe_values` reads one;
:func:`paper_differences` says, one line per setting, where a campaign's values leave the
paper's setup or fill a gap the paper leaves (fer3d-train prints them at start).

>>> recipe_values("paper", "bu3dfe")["repeats"]
100
"""

from __future__ import annotations

import difflib
import math
from importlib import resources
from pathlib import Path

from fer3d.errors import ConfigError
from fer3d.settings import RECIPE_KEYS
from fer3d_data.clibase import read_config_file

RECIPES = ("paper",)

# What the paper states (Sui et al., 2022). Adam with betas (0.9, 0.999) and a fixed
# learning rate are built into the engine, so only lr appears here.
PAPER = {"subjects": 60, "folds": 10, "repeats": 100, "image_size": 224, "lr": 1e-4,
         "pretrained": "imagenet", "head_init": "normal"}
# Where the paper is silent: our default and why it is ours.
SILENT = {"batch_size": "the paper gives no batch size",
          "epochs": "the paper gives no epoch count",
          "augment": "the paper describes no augmentation",
          "val_subjects": "the paper describes no validation split"}


def recipe_path(name: str, dataset: str) -> Path:
    """The file of recipe ``name`` for ``dataset``, or ``name`` itself when it is a file."""
    if Path(name).suffix.lower() in (".yaml", ".yml", ".json"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"{path}: no such recipe file")
        return path
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; shipped: {', '.join(RECIPES)} "
                             "(or pass a YAML file)")
    path = Path(str(resources.files(__name__) / f"{name}-{dataset}.yaml"))
    if not path.is_file():
        raise ConfigError(f"recipe {name!r} has no file for dataset {dataset!r} "
                             f"(looked for {path.name})")
    return path


def recipe_values(name: str, dataset: str) -> dict:
    """Option values of recipe ``name`` ("paper" or a YAML/JSON path) for ``dataset``.

    Keys are fer3d-train option names with underscores. A key outside :data:`RECIPE_KEYS`
    or a ``preset`` other than ``dataset`` is an error naming the file.
    """
    path = recipe_path(name, dataset)
    values = read_config_file(path)
    problems = []
    for key in values:
        if key not in RECIPE_KEYS:
            near = difflib.get_close_matches(key, RECIPE_KEYS, n=1)
            problems.append(f"unknown setting {key!r}" + (f" (did you mean {near[0]!r}?)"
                                                          if near else ""))
    if values.get("preset", dataset) != dataset:
        problems.append(f"preset {values['preset']!r} but dataset {dataset!r} was asked")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return values


def _same(key: str, ours, paper) -> bool:
    if key == "lr":
        return isinstance(ours, (int, float)) and math.isclose(float(ours), paper, rel_tol=1e-9)
    return ours == paper


def _pretrained_line(value) -> str | None:
    if value in (None, "none", ""):
        return "pretrained: none (branches from scratch); the paper: ImageNet weights"
    if value != "imagenet":
        return (f"pretrained: {value}; the paper: ImageNet weights (the same if that file "
                "is torchvision's ImageNet resnet18)")
    return None


def paper_differences(values: dict, dataset: str) -> list[str]:
    """One human line per setting of ``values`` that differs from the paper's or that the
    paper leaves open (our choice). Settings absent from ``values`` are not judged."""
    lines = []
    if values.get("preset") not in (None, "auto", dataset):
        lines.append(f"preset: {values['preset']}; the paper's {dataset} selection is "
                     f"preset {dataset}")
    for key, paper in PAPER.items():
        if key not in values:
            continue
        if key == "pretrained":
            line = _pretrained_line(values[key])
            lines += [line] if line else []
        elif not _same(key, values[key], paper):
            lines.append(f"{key}: {values[key]}; the paper: {paper}")
    for key, why in SILENT.items():
        if key in values:
            lines.append(f"{key}: {values[key]} (our choice: {why})")
    return lines
