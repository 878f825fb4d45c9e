"""fer3d-train: a campaign of the repeated subject-independent k-fold protocol.

Stage: user -> campaign. Settings come from the table's defaults, then ``--recipe``, then
``--config FILE`` (YAML or JSON, keys = option names), then the flags given; every option
is generated from :mod:`fer3d.settings` and the resulting :class:`TrainConfig` is checked
before anything runs. ``--help`` works without torch: torch is imported inside the body.
"""

from __future__ import annotations

import sys

import click

from fer3d.cli.options import (
    apply,
    check_shards,
    run_command,
    setting_option,
    setup_logging,
    shards_argument,
)
from fer3d.settings import FIELDS, AutoInt, TrainConfig, names
from fer3d_data.clibase import CONTEXT_SETTINGS, Command, config_option, require

# Options in the order --help lists them; the rest of the table follows.
FIRST = ("variant", "repeats", "folds", "epochs", "batch_size", "lr", "image_size", "preset",
         "classes", "subjects", "val_subjects", "augment", "pretrained", "head_init")
METAVARS = {"variant": "NAME", "pretrained": "PATH|imagenet|none", "out": "RUN_DIR",
            "cells": "LIST", "ray_address": "HOST:PORT", "campaign": "RUN_DIR"}


def _option(name: str):
    if isinstance(FIELDS[name].metadata["kind"], AutoInt):  # None reads "auto" there
        return setting_option(name, default="auto")
    return setting_option(name, metavar=METAVARS.get(name))


TABLE_OPTIONS = [_option(n) for n in FIRST + tuple(n for n in names("plan", "run", "process")
                                                   if n not in FIRST)]
COMMAND_OPTIONS = [
    click.option("--recipe", default=None, metavar="NAME|FILE",
                 help="settings of a shipped recipe (paper: the paper's setup for the shards' "
                      "dataset, fer3d/paper/recipes/) under --config and the flags given"),
    click.option("--summarize", "summarize", default=None, metavar="RUN_DIR",
                 type=click.Path(file_okay=False),
                 help="list missing and running cells of RUN_DIR; write its summary.json "
                      "when all are done"),
    click.option("--partial", is_flag=True, default=False,
                 help="with --summarize: summary.partial.json over the finished cells"),
    click.option("-v", "--verbose", is_flag=True, default=False),
]


def _summarize(run_dir: str, partial: bool) -> dict:
    from fer3d.campaign.rundir import RunDir
    from fer3d.campaign.summary import describe_status, summarize_run
    from fer3d.report.text import format_summary

    status = summarize_run(run_dir, partial=partial)
    click.echo(describe_status(status, RunDir(run_dir)))
    if "summary" in status:
        click.echo(format_summary(status["summary"]))
    return status


def _train(cfg: TrainConfig) -> dict:
    from fer3d.campaign.run import run_campaign
    from fer3d.report.text import format_summary

    if cfg.tensorboard:
        require("tensorboard", "tensorboard", "--tensorboard")
    result = run_campaign(cfg)
    if "accuracy_mean" in result:
        click.echo(format_summary(result))
    if "model_dir" in result:
        from fer3d.campaign.rundir import RunDir

        click.echo(f"final model: {result['members']} member(s), card "
                   f"{RunDir(cfg.out).model_card_md}; predict: fer3d-predict {cfg.out} SCANS...")
    click.echo(f"run directory: {cfg.out}")
    return result


@click.command("fer3d-train", cls=Command, context_settings=CONTEXT_SETTINGS)
@config_option(ignore=("shards",))
@shards_argument()
@apply(TABLE_OPTIONS + COMMAND_OPTIONS)
@click.pass_context
def train_command(ctx, shards, summarize, partial, verbose, recipe, **kw):
    """Train AFNet-M (or a variant) under the repeated subject-independent k-fold protocol
    on fer3d HDF5 shards; cells (repeat, fold) can be spread over processes, Slurm array
    tasks, torchrun ranks and Ray clusters (docs/cluster.md). At start it prints every
    setting that differs from the paper's or that the paper leaves open."""
    setup_logging(verbose)
    if summarize:
        return _summarize(summarize, partial)
    if not shards:
        raise click.UsageError("give at least one SHARD.h5 (or --summarize RUN_DIR)")
    check_shards(shards)
    dataset = _dataset_of(shards, kw["preset"])
    if recipe:
        _layer_recipe(ctx, kw, recipe, dataset)
    cfg = TrainConfig(shards=list(shards), **kw)
    _print_paper_differences(cfg, dataset)
    return _train(cfg)


def _dataset_of(shards, preset: str) -> str:
    from fer3d.campaign.protocol import resolve_preset
    from fer3d_data.shard_index import read_shard_index

    return resolve_preset(preset, read_shard_index(list(shards)))


def _layer_recipe(ctx: click.Context, kw: dict, recipe: str, dataset: str) -> None:
    """Recipe values fill every setting that neither --config nor a flag gave (checked with
    the rest when the TrainConfig is built)."""
    from fer3d.paper.recipes import recipe_values

    for key, value in recipe_values(recipe, dataset).items():
        if ctx.get_parameter_source(key) == click.core.ParameterSource.DEFAULT:
            kw[key] = value


def _print_paper_differences(cfg: TrainConfig, dataset: str) -> None:
    from fer3d.paper.catalog import DATASETS
    from fer3d.paper.recipes import paper_differences
    from fer3d.settings import RECIPE_KEYS
    from fer3d.train.runtime import resolved_precision

    if dataset not in DATASETS:  # a collection of the user's: no paper to differ from
        return
    lines = paper_differences({k: getattr(cfg, k) for k in RECIPE_KEYS}, dataset,
                              resolved_precision(cfg.device, cfg.amp))
    if lines:
        click.echo("settings that differ from the paper (Sui et al., 2022) or that it leaves "
                   "open, each marked ours or standard protocol of the paper's references "
                   "(--recipe paper sets the paper's):", err=True)
        for line in lines:
            click.echo(f"  - {line}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-train``."""
    return run_command(train_command, argv, resumable=True)


if __name__ == "__main__":
    sys.exit(main())
