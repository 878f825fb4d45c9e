"""Every training setting, its type and its bounds: one table the command line, config
files and :class:`fer3d.campaign.TrainConfig` built from Python all check against.

Stage: settings. Torch-free, so ``fer3d-train --help`` lists every choice without torch.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import click

from fer3d.catalog import VARIANT_NAMES
from fer3d_data.clibase import StrictBool, StrictFloat, StrictInt
from fer3d_data.errors import Fer3dDataError

DEFAULT_EPOCHS = 30      # the paper gives no epoch count or batch size (docs/protocol.md)
DEFAULT_BATCH_SIZE = 32
# Largest input: the paper trains at 224; at 1024 a batch of 32 already needs tens of GiB.
MAX_IMAGE_SIZE = 1024
PRESET_CHOICES = ("auto", "bu3dfe", "bosphorus")
EXECUTORS = ("local", "ray")
KEEP = ("weights", "none", "full")
AUTO_ON_OFF = ("auto", "on", "off")
# Config fields that must match between a run directory and a process attaching to it.
RESUME_KEYS = ("variant", "folds", "epochs", "batch_size", "lr", "image_size", "seed",
               "preset", "subjects", "val_subjects", "augment", "pretrained", "head_init")
HEAD_INITS = ("normal", "identity")
# Fields that describe one process, not the campaign: left out of config.json.
PROCESS_KEYS = ("out", "device", "workers", "resume", "progress", "cells", "task_index",
                "num_tasks", "executor", "parallel_cells", "gpus_per_cell", "ray_address",
                "init_only", "claim_timeout", "data_on_device", "compile", "tensorboard")


class ConfigError(Fer3dDataError, ValueError):
    """Training settings that cannot run; one message lists every bad key."""


class AutoInt(click.ParamType):
    """``auto`` (None) or an integer >= 0."""

    name = "auto|integer"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return None
        return StrictInt(min=0).convert(value, param, ctx)


def _default_workers() -> int:
    return min(4, max(1, (os.cpu_count() or 2) // 2))


@dataclass
class TrainConfig:
    """A campaign's settings (and this process's part in it); saved as config.json."""

    shards: list[str]
    out: str
    variant: str = "afnet_m"
    repeats: int = 1
    folds: int = 10
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = 1e-4
    image_size: int = 224
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    workers: int = field(default_factory=_default_workers)
    seed: int = 0
    resume: bool = False
    preset: str = "auto"
    subjects: int = 60
    pretrained: str | None = None
    head_init: str = "normal"
    val_subjects: int = 0
    augment: bool = True
    progress: bool = True
    data_on_device: str = "auto"
    compile: str = "auto"
    keep: str = "weights"
    checkpoint_every: int | None = None
    nan_check_every: int = 50
    cells: str | None = None
    task_index: int | None = None
    num_tasks: int | None = None
    init_only: bool = False
    executor: str = "local"
    parallel_cells: int = 1
    gpus_per_cell: float = 1.0
    ray_address: str | None = None
    claim_timeout: float = 300.0
    tensorboard: bool = False

    def campaign_settings(self) -> dict:
        """What config.json records: the campaign's settings, not this process's."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in PROCESS_KEYS}


SETTINGS: dict[str, click.ParamType] = {
    "variant": click.Choice(VARIANT_NAMES), "repeats": StrictInt(min=1),
    "folds": StrictInt(min=2), "epochs": StrictInt(min=1),
    # BatchNorm cannot train on one sample (1x1 maps at layer4 for small inputs)
    "batch_size": StrictInt(min=2, max=4096), "lr": StrictFloat(min=0.0, min_open=True),
    "image_size": StrictInt(min=8, max=MAX_IMAGE_SIZE),
    "device": click.Choice(("auto", "cpu", "cuda")),
    "amp": click.Choice(("auto", "off", "bf16", "fp16")), "channels_last": StrictBool(),
    "workers": StrictInt(min=0), "seed": StrictInt(min=0), "resume": StrictBool(),
    "preset": click.Choice(PRESET_CHOICES), "subjects": StrictInt(min=1),
    "val_subjects": StrictInt(min=0), "augment": StrictBool(), "progress": StrictBool(),
    "data_on_device": click.Choice(AUTO_ON_OFF), "compile": click.Choice(AUTO_ON_OFF),
    "keep": click.Choice(KEEP), "checkpoint_every": AutoInt(),
    "nan_check_every": StrictInt(min=0), "task_index": StrictInt(min=0),
    "num_tasks": StrictInt(min=1), "init_only": StrictBool(),
    "executor": click.Choice(EXECUTORS), "parallel_cells": StrictInt(min=1),
    "gpus_per_cell": StrictFloat(min=0.0, max=64.0), "claim_timeout": StrictFloat(min=1.0),
    "tensorboard": StrictBool(), "head_init": click.Choice(HEAD_INITS),
}


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check and normalise every setting (``"false"`` -> False, ``"8"`` -> 8); raise one
    ConfigError naming each bad key. Nothing has run yet when this fails."""
    problems = []
    for key, kind in SETTINGS.items():
        value = getattr(cfg, key)
        if value is None and key in ("task_index", "num_tasks", "checkpoint_every"):
            continue
        try:
            setattr(cfg, key, kind.convert(value, None, None))
        except click.BadParameter as exc:
            problems.append(f"{key}: {exc.message}")
    if isinstance(cfg.pretrained, str) and cfg.pretrained.strip().lower() in ("", "none"):
        cfg.pretrained = None  # "none" overrides a recipe's or config file's weights
    if isinstance(cfg.image_size, int) and cfg.image_size % 4:
        problems.append(f"image_size: {cfg.image_size} is not a multiple of 4 (masks are S/4)")
    if not cfg.shards:
        problems.append("shards: no shard given")
    if problems:
        raise ConfigError("invalid training settings: " + "; ".join(problems))
    cfg.shards = [os.fspath(s) for s in cfg.shards]
    return cfg
