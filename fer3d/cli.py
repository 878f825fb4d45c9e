"""fer3d-train and fer3d-eval: click command lines over fer3d.campaign and fer3d.evaluate.

Stage: user -> campaign. Settings come from the defaults, then ``--config FILE`` (YAML or
JSON, keys = option names), then the flags given; every value is checked by the type in
fer3d.settings.SETTINGS before anything runs. ``--help`` works without torch: torch is
imported inside the command bodies.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import click

from fer3d.catalog import VARIANT_NAMES
from fer3d.settings import SETTINGS, TrainConfig
from fer3d_data.clibase import (
    CONTEXT_SETTINGS,
    Command,
    StrictInt,
    config_option,
    require,
    split_list,
)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
             if f.default is not dataclasses.MISSING}


def _opt(name: str, help: str, flag: str | None = None, **kw):
    """An option whose type and default are those of fer3d.settings (one fact, one place)."""
    decl = flag or "--" + name.replace("_", "-")
    kw.setdefault("default", _DEFAULTS.get(name))
    return click.option(decl, name, type=SETTINGS[name], help=help, **kw)


def _flag(name: str, help: str):
    dashed = name.replace("_", "-")
    return click.option(f"--{dashed}/--no-{dashed}", name, default=_DEFAULTS[name], help=help)


TRAIN_OPTIONS = [
    _opt("variant", f"model: {', '.join(VARIANT_NAMES)}", metavar="NAME"),
    _opt("repeats", "protocol repeats R (paper: 100)"),
    _opt("folds", "k of subject-independent k-fold"),
    _opt("epochs", "fixed training epochs per cell"),
    _opt("batch_size", "training batch (fixed: the last partial batch is dropped)"),
    _opt("lr", "Adam learning rate, fixed"),
    _opt("image_size", "training input size S (multiple of 4)"),
    _opt("preset", "sample selection; auto: the shards' dataset"),
    _opt("subjects", "subjects to select"),
    _opt("val_subjects", "training subjects held out per cell to pick the epoch"),
    _flag("augment", "training flips and small affine warps"),
    click.option("--pretrained", default=None, metavar="PATH|imagenet|none",
                 help="resnet18 state dict for both branches (imagenet: torchvision's file in "
                      "the torch hub cache; never downloaded); none: from scratch"),
    _opt("head_init", "MA/AF convolutions start from a normal draw (the paper) or so that MA "
         "is the identity"),
    click.option("--recipe", default=None, metavar="NAME|FILE",
                 help="settings of a shipped recipe (paper: the paper's setup for the shards' "
                      "dataset, fer3d/recipes/) under --config and the flags given"),
    _opt("seed", "seed of subject choice, folds and every cell"),
    click.option("--out", default="runs/fer3d", metavar="RUN_DIR", show_default=True,
                 help="run directory"),
    click.option("--resume", is_flag=True, default=False,
                 help="attach to the run in --out (finished cells are kept)"),
    _opt("device", "auto: cuda (cuda:LOCAL_RANK under torchrun) if present, else cpu"),
    _opt("amp", "mixed precision; auto: bf16 where native, fp16+scaler on old GPUs"),
    _flag("channels_last", "channels-last memory format"),
    _opt("compile", "torch.compile the model (auto: off, see docs/performance.md)"),
    _opt("data_on_device", "keep the samples on the device and augment in batches"),
    _opt("workers", "DataLoader workers of the per-sample path",
         default=TrainConfig([], "").workers),
    _opt("keep", "what a finished cell keeps: weights (fp32), none, full (+optimizer)"),
    _opt("checkpoint_every", "epochs between resume checkpoints; 0 none; auto: < 5 % of "
         "training time", default="auto"),
    _opt("nan_check_every", "steps between NaN checks (each waits for the device); 0: "
         "once per epoch"),
    click.option("--cells", default=None, metavar="LIST",
                 help="cells to try, flat index repeat*folds+fold: 0-99,150"),
    _opt("task_index", "this task's index (default: Slurm array / torchrun rank)",
         default=None),
    _opt("num_tasks", "number of tasks sharing the cells (default: Slurm / torchrun)",
         default=None),
    click.option("--init-only", "init_only", is_flag=True, default=False,
                 help="write config.json and folds.json, train nothing"),
    _opt("executor", "local (this machine) or ray (a cluster, `fer3d[ray]`)"),
    _opt("parallel_cells", "local executor: cells trained at once in separate processes"),
    _opt("gpus_per_cell", "ray: GPUs per cell task (0.25: four cells share a GPU)"),
    click.option("--ray-address", default=None, metavar="HOST:PORT",
                 help="ray: a running cluster's head (default: start a local instance)"),
    _opt("claim_timeout", "seconds without heartbeat before a cell's claim counts as dead"),
    click.option("--tensorboard", is_flag=True, default=False,
                 help="per-epoch scalars under RUN/tensorboard (`fer3d[tensorboard]`)"),
    _flag("progress", "progress bar"),
    click.option("--summarize", "summarize", default=None, metavar="RUN_DIR",
                 type=click.Path(file_okay=False),
                 help="list missing and running cells of RUN_DIR; write its summary.json "
                      "when all are done"),
    click.option("--partial", is_flag=True, default=False,
                 help="with --summarize: summary.partial.json over the finished cells"),
    click.option("-v", "--verbose", is_flag=True, default=False),
]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _summarize(run_dir: str, partial: bool) -> dict:
    from fer3d import report
    from fer3d.campaign import describe_status, summarize_run
    from fer3d.protocol import load_folds

    status = summarize_run(run_dir, partial=partial)
    click.echo(describe_status(status, Path(run_dir),
                               load_folds(f"{run_dir}/folds.json").k))
    if "summary" in status:
        click.echo(report.format_summary(status["summary"]))
    return status


def _train(shards: tuple[str, ...], kw: dict) -> dict:
    from fer3d import report
    from fer3d.campaign import run_campaign
    from fer3d.engine import DivergedError

    if kw["tensorboard"]:
        require("tensorboard", "tensorboard", "--tensorboard")
    cfg = TrainConfig(shards=list(shards), **kw)
    try:
        result = run_campaign(cfg)
    except DivergedError as exc:
        raise click.ClickException(f"{exc}; rerun the same command to resume") from exc
    if "accuracy_mean" in result:
        click.echo(report.format_summary(result))
    click.echo(f"run directory: {cfg.out}")
    return result


def _apply(options):
    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


@click.command("fer3d-train", cls=Command, context_settings=CONTEXT_SETTINGS)
@config_option(ignore=("shards",))
@click.argument("shards", nargs=-1, type=click.Path(dir_okay=False), metavar="SHARD.h5...")
@_apply(TRAIN_OPTIONS)
@click.pass_context
def train_command(ctx, shards, summarize, partial, verbose, recipe, **kw):
    """Train AFNet-M (or a variant) under the repeated subject-independent k-fold protocol
    on fer3d HDF5 shards; cells (repeat, fold) can be spread over processes, Slurm array
    tasks, torchrun ranks and Ray clusters (docs/cluster.md). At start it prints every
    setting that differs from the paper's or that the paper leaves open."""
    _setup_logging(verbose)
    if summarize:
        return _summarize(summarize, partial)
    if not shards:
        raise click.UsageError("give at least one SHARD.h5 (or --summarize RUN_DIR)")
    dataset = _dataset_of(shards, kw["preset"])
    if recipe:
        _layer_recipe(ctx, kw, recipe, dataset)
    _print_paper_differences(kw, dataset)
    return _train(shards, kw)


def _dataset_of(shards, preset: str) -> str:
    from fer3d_data.shard_index import read_shard_index

    return preset if preset != "auto" else read_shard_index(list(shards)).datasets[0]


def _layer_recipe(ctx: click.Context, kw: dict, recipe: str, dataset: str) -> None:
    """Recipe values fill every setting that neither --config nor a flag gave."""
    from fer3d.recipes import recipe_values

    for key, value in recipe_values(recipe, dataset).items():
        if ctx.get_parameter_source(key) != click.core.ParameterSource.DEFAULT:
            continue
        if value is not None and key in SETTINGS:
            value = SETTINGS[key].convert(value, None, ctx)
        kw[key] = value


def _print_paper_differences(kw: dict, dataset: str) -> None:
    from fer3d.recipes import RECIPE_KEYS, paper_differences

    lines = paper_differences({k: kw[k] for k in RECIPE_KEYS if k in kw}, dataset)
    if lines:
        click.echo("settings that differ from the paper (Sui et al., 2022) or that it leaves "
                   "open (--recipe paper sets the paper's):", err=True)
        for line in lines:
            click.echo(f"  - {line}", err=True)


@click.command("fer3d-eval", cls=Command, context_settings=CONTEXT_SETTINGS)
@click.argument("checkpoint", type=click.Path(dir_okay=False), metavar="CKPT")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False),
                metavar="SHARD.h5...")
@click.option("--subjects", default=None, metavar="A,B,...|@FILE",
              help="subjects to test (default: the checkpoint's test subjects)")
@click.option("--variant", default=None, type=click.Choice(VARIANT_NAMES),
              help="refuse a checkpoint of another variant")
@click.option("--preset", type=SETTINGS["preset"], default="auto")
@click.option("--image-size", type=StrictInt(min=8, max=1024), default=None,
              help="default: the size the checkpoint was trained at")
@click.option("--batch-size", type=SETTINGS["batch_size"], default=32)
@click.option("--device", type=SETTINGS["device"], default="auto")
@click.option("--amp", type=SETTINGS["amp"], default="auto")
@click.option("--channels-last/--no-channels-last", default=True)
@click.option("--workers", type=SETTINGS["workers"], default=0)
@click.option("--out", default=None, metavar="JSON", help="write the result here")
def eval_command(checkpoint, shards, subjects, out, **kw):
    """Evaluate a fer3d checkpoint (a cell's weights.pt or checkpoint.pt) on shard samples
    (default: the test subjects stored in the checkpoint)."""
    from fer3d import report
    from fer3d.evaluate import evaluate_checkpoint
    from fer3d.runfiles import write_json

    _setup_logging(False)
    result = evaluate_checkpoint(checkpoint, list(shards), subjects=split_list(subjects), **kw)
    click.echo(report.format_summary(result))
    if out:
        write_json(result, out)
    return result


def _main(command: click.Command, argv: list[str] | None) -> int:
    """Run a click command as a function: the exit code, errors printed as click does."""
    try:
        command.main(args=argv, prog_name=command.name, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-train``."""
    return _main(train_command, argv)


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-eval``."""
    return _main(eval_command, argv)


if __name__ == "__main__":
    sys.exit(train_main())
