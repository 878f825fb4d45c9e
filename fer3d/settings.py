"""Every training setting, its type, bounds, default, help and scope: one table.

Stage: settings (torch-free, so every ``--help`` works without torch). :class:`TrainConfig`
is the table: each field is declared with :func:`setting`, and everything else derives from
it: the command-line options of fer3d-train, fer3d-eval, fer3d-reproduce and fer3d-cam
(:mod:`fer3d.cli.options`), which settings a recipe may set, which a run directory records
and which must match to attach to a run. Values are checked and coerced in one place,
:func:`check` (``"false"`` -> False, ``"8"`` -> 8): a flag, a ``--config`` file, a recipe
and a :class:`TrainConfig` built from Python all go through it, and one
:class:`~fer3d.errors.ConfigError` names every bad key.

Scopes:
    plan     fixes what a cell computes: must equal the run directory's to attach to it.
    run      recorded in config.json; may change when attaching (more repeats, precision, ...).
    process  how this process takes part (device, executor, cells): never recorded.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import click

from fer3d.campaign.protocol import PRESETS
from fer3d.errors import ConfigError
from fer3d.paper.catalog import VARIANT_NAMES
from fer3d_data.clibase import StrictBool, StrictFloat, StrictInt

DEFAULT_EPOCHS = 30      # the paper gives no epoch count or batch size (docs/protocol.md)
DEFAULT_BATCH_SIZE = 32
# Largest input: the paper trains at 224; at 1024 a batch of 32 already needs tens of GiB.
MAX_IMAGE_SIZE = 1024
PRESET_CHOICES = ("auto", *PRESETS)
EXECUTORS = ("local", "ray")
KEEP = ("weights", "first", "none", "full")
AUTO_ON_OFF = ("auto", "on", "off")
HEAD_INITS = ("normal", "identity")
DEVICES = ("auto", "cpu", "cuda")  # and cuda:N
AMPS = ("auto", "off", "bf16", "fp16")
SCOPES = ("plan", "run", "process")


class AutoInt(click.ParamType):
    """``auto`` (None) or an integer >= ``min``."""

    name = "auto|integer"

    def __init__(self, min: int = 0):
        self.min = min

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return None
        return StrictInt(min=self.min).convert(value, param, ctx)


class DeviceName(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (one GPU by its index)."""

    name = "auto|cpu|cuda|cuda:N"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        kind, _, index = text.partition(":")
        if text in DEVICES or (kind == "cuda" and index.isdigit()):
            return text
        self.fail(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N", param, ctx)


class OptionalText(click.ParamType):
    """Any text; ``none`` or empty (a recipe's or config file's way to say "no value") -> None."""

    name = "text"

    def convert(self, value, param, ctx):
        if value is None or str(value).strip().lower() in ("", "none"):
            return None
        return str(value)


class NameList(click.ParamType):
    """Comma-separated names (or a list of them) -> list; ``none`` or empty -> None."""

    name = "a,b,..."

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            self.fail(f"{value!r} is not a comma-separated list of names", param, ctx)
        names = [str(v).strip() for v in items]
        if not all(names):
            self.fail(f"{value!r} holds an empty name", param, ctx)
        if len(set(names)) != len(names):
            self.fail(f"{value!r} names a class twice", param, ctx)
        return names


def setting(default, kind: click.ParamType, help: str, *, scope: str = "process",
            recipe: bool = False, optional: bool = False, flag: str | None = None):
    """A :class:`TrainConfig` field: its type ``kind`` (a click ParamType that checks and
    coerces), ``help`` for every command line, ``scope`` (see the module doc), whether a
    recipe may set it, whether None is a valid value, and a flag other than ``--name``."""
    assert scope in SCOPES, scope
    meta = {"kind": kind, "help": help, "scope": scope, "recipe": recipe,
            "optional": optional, "flag": flag}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _default_workers() -> int:
    return min(4, max(1, (os.cpu_count() or 2) // 2))


@dataclass
class TrainConfig:
    """A campaign's settings (and this process's part in it); saved as config.json.

    ``shards`` and ``out`` are the campaign's inputs and run directory; every other field
    is a setting of the table (``dataclasses.fields(TrainConfig)``). Building one checks
    every value (:func:`check`).
    """

    shards: list[str]
    out: str = setting("runs/fer3d", OptionalText(), "run directory", flag="--out")
    variant: str = setting("afnet_m", click.Choice(VARIANT_NAMES), "model variant",
                           scope="plan", recipe=True)
    repeats: int = setting(1, StrictInt(min=1), "protocol repeats R (paper: 100)", scope="run",
                           recipe=True)
    folds: int = setting(10, StrictInt(min=2), "k of subject-independent k-fold",
                         scope="plan", recipe=True)
    epochs: int = setting(DEFAULT_EPOCHS, StrictInt(min=1), "fixed training epochs per cell",
                          scope="plan", recipe=True)
    # BatchNorm cannot train on one sample (1x1 maps at layer4 for small inputs)
    batch_size: int = setting(DEFAULT_BATCH_SIZE, StrictInt(min=2, max=4096),
                              "training batch (fixed: the last partial batch is dropped)",
                              scope="plan", recipe=True)
    lr: float = setting(1e-4, StrictFloat(min=0.0, min_open=True), "Adam learning rate, fixed",
                        scope="plan", recipe=True)
    image_size: int = setting(224, StrictInt(min=8, max=MAX_IMAGE_SIZE),
                              "input size S (multiple of 4)", scope="plan", recipe=True)
    device: str = setting("auto", DeviceName(), "auto: a GPU if torch can use one, else cpu "
                          "(refused when GPUs are allocated but unusable); cuda: this process's "
                          "GPU (torchrun LOCAL_RANK, srun SLURM_LOCALID, --parallel-cells "
                          "worker); cuda:N: that one")
    amp: str = setting("auto", click.Choice(AMPS),
                       "mixed precision; auto: bf16 where native, fp16+scaler on old GPUs",
                       scope="run")
    channels_last: bool = setting(True, StrictBool(), "channels-last memory format",
                                  scope="run")
    workers: int = setting(_default_workers, StrictInt(min=0),
                           "DataLoader workers of the per-sample path")
    seed: int = setting(0, StrictInt(min=0), "seed of subject choice, folds and every cell",
                        scope="plan", recipe=True)
    resume: bool = setting(False, StrictBool(),
                           "refuse to start a new run: --out must hold one (the same command "
                           "resumes its run with or without this flag)")
    preset: str = setting("auto", click.Choice(PRESET_CHOICES),
                          "sample selection (docs/protocol.md); auto: the shards' dataset's, "
                          "labels for any other collection", scope="plan", recipe=True)
    classes: list[str] | None = setting(None, NameList(), "classes to train, in this order "
                                        "(default: the preset's; labels: every label of the "
                                        "shards)", scope="plan", recipe=True, optional=True)
    subjects: int = setting(60, StrictInt(min=1), "subjects drawn by a preset that draws "
                            "them (labels: every subject)", scope="plan", recipe=True)
    pretrained: str | None = setting(
        None, click.STRING, "resnet18 state dict for both branches (imagenet: torchvision's "
        "file in the torch hub cache; never downloaded); none: from scratch", scope="plan",
        recipe=True, optional=True)
    head_init: str = setting("normal", click.Choice(HEAD_INITS),
                             "MA/AF convolutions start from a normal draw (the paper) or so "
                             "that MA is the identity", scope="plan", recipe=True)
    val_subjects: int = setting(0, StrictInt(min=0),
                                "training subjects held out per cell to pick the epoch",
                                scope="plan", recipe=True)
    augment: bool = setting(True, StrictBool(), "training flips and small affine warps",
                            scope="plan", recipe=True)
    progress: bool = setting(True, StrictBool(), "progress bar")
    data_on_device: str = setting("auto", click.Choice(AUTO_ON_OFF),
                                  "keep the samples on the device and augment in batches")
    compile: str = setting("auto", click.Choice(AUTO_ON_OFF),
                           "torch.compile the model (auto: off, see docs/performance.md)")
    keep: str = setting("weights", click.Choice(KEEP), "what a finished cell keeps: weights "
                        "(fp32), first (weights of cell r0 f0 only), none, full (+optimizer)",
                        scope="run", recipe=True)
    checkpoint_every: int | None = setting(None, AutoInt(), "epochs between resume "
                                           "checkpoints; 0 none; auto: < 5 % of training time",
                                           scope="run", optional=True)
    nan_check_every: int = setting(50, StrictInt(min=0), "steps between NaN checks (each "
                                   "waits for the device); 0: once per epoch", scope="run")
    cells: str | None = setting(None, OptionalText(), "cells to try, flat index "
                                "repeat*folds+fold: 0-99,150", optional=True)
    task_index: int | None = setting(None, StrictInt(min=0), "this task's index, from 0 "
                                     "(default: Slurm array / torchrun rank)", optional=True)
    num_tasks: int | None = setting(None, StrictInt(min=1), "number of tasks sharing the "
                                    "cells (default: Slurm / torchrun)", optional=True)
    init_only: bool = setting(False, StrictBool(), "write config.json and folds.json, train "
                              "nothing")
    executor: str = setting("local", click.Choice(EXECUTORS),
                            "local (this machine) or ray (a cluster, `fer3d[ray]`)")
    parallel_cells: int = setting(1, StrictInt(min=1), "local executor: worker processes, "
                                  "spread over this process's GPUs")
    pack: int | None = setting(None, AutoInt(min=1), "cells trained at once as one network "
                               "grouped K ways (auto: from free GPU memory on CUDA, 1 on a CPU)",
                               optional=True)
    gpus_per_cell: float = setting(1.0, StrictFloat(min=0.0, max=64.0),
                                   "ray: GPUs per worker actor (0.25: four actors share a GPU)")
    ray_address: str | None = setting(None, OptionalText(), "ray: a running cluster's head "
                                      "(default: start a local instance)", optional=True)
    claim_timeout: float = setting(300.0, StrictFloat(min=1.0), "seconds without heartbeat "
                                   "before a cell's claim counts as dead")
    tensorboard: bool = setting(False, StrictBool(), "per-epoch scalars under RUN/tensorboard "
                                "(`fer3d[tensorboard]`)")
    final: bool = setting(False, StrictBool(), "train on every selected subject (no test fold) "
                          "and write a model directory in --out (docs/predict.md)", scope="plan")
    seeds: int = setting(1, StrictInt(min=1), "--final: models trained (one per seed), kept "
                         "as an ensemble; replaces --repeats", scope="run")
    campaign: str | None = setting(None, OptionalText(), "--final: a finished campaign run of "
                                   "the same settings whose accuracy the model card states as "
                                   "expected", optional=True)

    def __post_init__(self):
        values = check(dataclasses.asdict(self), shards=self.shards)
        for key, value in values.items():
            setattr(self, key, value)
        if self.final:  # a final model's cells are its seeds: one "repeat" per member
            self.repeats = self.seeds

    def campaign_settings(self) -> dict:
        """What config.json records: the plan's and the run's settings, not this process's."""
        return {k: getattr(self, k) for k in names("plan", "run")}


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig) if f.metadata}


def names(*scopes: str) -> tuple[str, ...]:
    """Setting names of ``scopes`` (plan, run, process), in table order."""
    return tuple(n for n, f in FIELDS.items() if f.metadata["scope"] in scopes)


PLAN_KEYS = names("plan")
RECIPE_KEYS = tuple(n for n, f in FIELDS.items() if f.metadata["recipe"])


def default(name: str):
    """The table's default of setting ``name``."""
    f = FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _convert(name: str, value):
    meta = FIELDS[name].metadata
    if value is None and meta["optional"]:
        return None
    return meta["kind"].convert(value, None, None)


def check(values: dict, *, shards=None) -> dict:
    """``values`` (setting name -> value, any subset of the table) checked and coerced; one
    ConfigError naming every bad key. ``shards`` given: a campaign's cross-field checks too."""
    problems, out = [], {}
    for key, value in values.items():
        if key not in FIELDS:
            continue
        try:
            out[key] = _convert(key, value)
        except click.BadParameter as exc:
            problems.append(f"{key}: {exc.message}")
    if "pretrained" in out and str(out["pretrained"]).strip().lower() in ("", "none"):
        out["pretrained"] = None  # "none" overrides a recipe's or config file's weights
    size = out.get("image_size")
    if isinstance(size, int) and size % 4:
        problems.append(f"image_size: {size} is not a multiple of 4 (masks are S/4)")
    if shards is not None and not shards:
        problems.append("shards: no shard given")
    if problems:
        raise ConfigError("invalid training settings: " + "; ".join(problems))
    return out
