"""Recipes: shipped, commented option files that set up a campaign as the paper did.

Stage: command lines (torch-free). Which settings a recipe may set is the settings table's
``recipe`` flag (:data:`fer3d.settings.RECIPE_KEYS`: what describes the experiment, not the
machine). ``paper-bu3dfe.yaml`` and ``paper-bosphorus.yaml`` hold
fer3d-train option values (keys with underscores), each marked by where it comes from:
"paper" only for what the paper states, "standard protocol of the paper's references" for
what the paper takes from its references [4, 7-12] without stating it, "ours" for our
choices. :func:`recipe_values` reads one; :func:`paper_differences` says, one line per
setting with the same marks, where a campaign's values leave the paper's setup or fill a
gap it leaves, the precision it trains in included (fer3d-train prints them at start).

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
PAPER_SAYS, REFERENCES, OURS = "the paper", "standard protocol of the paper's references", "ours"

# What the paper states (Sui et al., 2022). Adam with betas (0.9, 0.999) and a fixed
# learning rate are built into the engine, so only lr appears here.
PAPER = {"subjects": 60, "folds": 10, "repeats": 100, "image_size": 224, "lr": 1e-4,
         "pretrained": "imagenet", "head_init": "normal"}
# What the engine takes from the standard protocol of the paper's references (the paper
# names the protocol, not these rules), per dataset.
REFERENCE_RULES = {"bu3dfe": "the six expressions at the two highest intensities (3 and 4)",
                   "bosphorus": "one scan per subject and emotion"}
SUBJECT_INDEPENDENT = "all of a subject's samples in one fold"
# Where the paper is silent: our default and why it is ours.
SILENT = {"batch_size": "the paper gives no batch size",
          "epochs": "the paper gives no epoch count",
          "augment": "the paper describes no augmentation",
          "val_subjects": "the paper describes no validation split",
          "seed": "which subjects and folds: the paper draws them at random and does not "
                  "list them"}


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
        return f"pretrained: none (branches from scratch) ({OURS}; {PAPER_SAYS}: ImageNet)"
    if value != "imagenet":
        return (f"pretrained: {value} ({OURS}; {PAPER_SAYS}: ImageNet weights, the same if "
                "that file is torchvision's ImageNet resnet18)")
    return None


def precision_line(precision: str | None) -> list[str]:
    """The resolved autocast dtype (runtime's AmpMode name: bfloat16, float16, off) as a
    line: mixed precision is ours, the paper states none."""
    if precision in (None, "off"):
        return []
    scaled = " with loss scaling" if precision == "float16" else ""
    return [f"precision: {precision} autocast{scaled} ({OURS}: the paper states no "
            "precision; --amp off trains in fp32)"]


def _protocol_lines(values: dict, dataset: str) -> list[str]:
    preset = values.get("preset")
    if preset not in (None, "auto", dataset):
        return [f"preset: {preset} ({OURS}; the paper's {dataset} selection is preset "
                f"{dataset})"]
    lines = [f"preset: {dataset} ({REFERENCES}: {REFERENCE_RULES[dataset]}; {PAPER_SAYS} "
             "does not say which)"] if "preset" in values and dataset in REFERENCE_RULES else []
    if "folds" in values:
        lines.append(f"folds: subject-independent ({REFERENCES}: {SUBJECT_INDEPENDENT})")
    return lines


def paper_differences(values: dict, dataset: str, precision: str | None = None) -> list[str]:
    """One line per setting of ``values`` that differs from the paper's or fills a gap it
    leaves, marked "ours" or "standard protocol of the paper's references", and the
    resolved ``precision`` (:func:`precision_line`). Settings absent from ``values`` are
    not judged."""
    lines = _protocol_lines(values, dataset)
    for key, paper in PAPER.items():
        if key not in values:
            continue
        if key == "pretrained":
            line = _pretrained_line(values[key])
            lines += [line] if line else []
        elif not _same(key, values[key], paper):
            lines.append(f"{key}: {values[key]} ({OURS}; {PAPER_SAYS}: {paper})")
    for key, why in SILENT.items():
        if key in values:
            lines.append(f"{key}: {values[key]} ({OURS}: {why})")
    return lines + precision_line(precision)
