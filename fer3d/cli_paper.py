"""fer3d-reproduce, fer3d-report and fer3d-cam: the paper's tables and figures from the shell.

Stage: user -> reproduction. Click commands on the shared plumbing (fer3d_data.clibase):
``--config FILE`` layered under the flags, project errors as one line with exit 2. Importing
this module and ``--help`` never import torch; each command imports it in its body.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from fer3d.catalog import TARGET_NAMES, TARGETS
from fer3d_data.clibase import Command, StrictInt, config_option, require, split_list
from fer3d_data.errors import Fer3dDataError


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


FROM_RECIPE = "default: the recipe's"


@click.command("fer3d-reproduce", cls=Command)
@click.argument("target", type=click.Choice(TARGET_NAMES))
@click.argument("shards", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@config_option()
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="runs go to DIR/runs/<dataset>/<variant>, each target to DIR/<target>")
@click.option("--recipe", default="paper", show_default=True,
              help="shipped recipe name or a YAML file of fer3d-train settings")
@click.option("--repeats", type=StrictInt(min=1), help=f"protocol repeats ({FROM_RECIPE})")
@click.option("--folds", type=StrictInt(min=2), help=f"k of k-fold ({FROM_RECIPE})")
@click.option("--epochs", type=StrictInt(min=1), help=f"epochs per cell ({FROM_RECIPE})")
@click.option("--image-size", type=StrictInt(min=8), help=f"input side S ({FROM_RECIPE})")
@click.option("--batch-size", type=StrictInt(min=1), help=f"({FROM_RECIPE})")
@click.option("--subjects", type=StrictInt(min=2), help=f"subjects to select ({FROM_RECIPE})")
@click.option("--pretrained", metavar="PATH|imagenet|none",
              help=f"resnet18 weights of both branches, never downloaded ({FROM_RECIPE})")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--workers", type=StrictInt(min=0), help="DataLoader workers (default: engine's)")
@click.option("--cam-samples", type=StrictInt(min=1), default=6,
              help="Fig. 6: test samples in the Grad-CAM montage (one per expression first)")
@click.option("--progress/--no-progress", default=True, help="per-cell progress bars")
@click.option("-v", "--verbose", is_flag=True)
def reproduce_command(target, shards, out, recipe, cam_samples, verbose, **overrides):
    """Run every campaign TARGET needs on SHARDS (one or both datasets), reusing finished runs
    and resuming unfinished ones, then build TARGET beside the paper's numbers.

    TARGET: table1 (AFNet-M), table2 (fusion strategies, no MA), table3 (MA ablation),
    table4 (parameters, no training, no SHARDS needed), fig4 (confusion matrices), fig5
    (fusion positions), fig6 (Grad-CAM), all. Costs and choices: docs/reproduce.md.
    """
    from fer3d.reproduce import reproduce

    _logging(verbose)
    if (TARGETS.get(target) is None or TARGETS[target].trains) and not shards:
        raise click.UsageError(f"{target} trains models: give the shard file(s)")
    if target in ("fig6", "all"):
        require("pytorch_grad_cam", "cam", "Fig. 6 (Grad-CAM)")
    outcome = reproduce(target, list(shards), out, recipe=recipe, overrides=overrides,
                        cam_samples=cam_samples)
    if target == "table4":
        click.echo(Path(out, "table4", "table4.md").read_text(encoding="utf-8"))
    for path in outcome.files:
        click.echo(f"wrote {path}")


@click.command("fer3d-report", cls=Command)
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@config_option()
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), metavar="DIR")
@click.option("--params/--no-params", default=True,
              help="include the parameter table (Table 4; builds the three models)")
@click.option("--strict", is_flag=True, help="fail if any RUN cannot be read")
def report_command(runs, out, params, strict):
    """Compile finished run directories RUN... into DIR/report.md, with tables (markdown,
    LaTeX, CSV) under DIR/tables and figures under DIR/figures."""
    from fer3d.reporting import load_runs, write_report

    found, problems = load_runs(list(runs))
    for line in problems:
        click.echo(f"fer3d-report: skipped {line}", err=True)
    if not found or (strict and problems):
        raise Fer3dDataError(f"{len(problems)} of {len(runs)} run(s) could not be read")
    path = write_report(found, Path(out), problems=problems, params_size=224 if params else None)
    click.echo(f"wrote {path}")


def _reproduce_pair(root: Path, shards: list[str]) -> list[Path]:
    """AFNet-M and its without-MA run of a fer3d-reproduce directory (one dataset)."""
    from fer3d.reproduce import shards_by_dataset

    datasets = list(shards_by_dataset(shards))
    if len(datasets) != 1:
        raise Fer3dDataError(f"give shards of one dataset with a reproduce directory, got "
                             f"{', '.join(datasets)}")
    return [root / "runs" / datasets[0] / v for v, _ in TARGETS["fig6"].rows]


@click.command("fer3d-cam", cls=Command)
@click.argument("ckpt", type=click.Path(exists=True))
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@config_option()
@click.option("--samples", required=True, metavar="ID,ID|@FILE",
              help="sample ids to show, comma-separated or one per line in FILE")
@click.option("--compare", type=click.Path(exists=True), metavar="CKPT2",
              help="a second checkpoint shown beside (e.g. the without-MA variant)")
@click.option("--output", "-o", default="cams.png", type=click.Path(dir_okay=False))
@click.option("--fusion-weights", type=click.Path(dir_okay=False), metavar="PNG",
              help="also plot the adaptive-fusion weights per expression on the test fold")
@click.option("--image-size", type=StrictInt(min=8), help="default: the checkpoint's")
@click.option("--cam-class", type=click.Choice(["predicted", "true"]), default="predicted",
              help="class whose score the maps explain")
def cam_command(ckpt, shards, samples, compare, output, fusion_weights, image_size, cam_class):
    """Grad-CAM of each branch at its last block for the samples of SHARDS (the paper's
    Fig. 6). CKPT is a checkpoint (.pt/.safetensors, engine checkpoint or plain state dict),
    a cell or run directory, or a fer3d-reproduce directory (AFNet-M and without MA)."""
    require("pytorch_grad_cam", "cam", "fer3d-cam")
    from fer3d.cam import make_figures

    root = Path(ckpt)
    checkpoints = (_reproduce_pair(root, list(shards)) if (root / "runs").is_dir()
                   else [root] + ([Path(compare)] if compare else []))
    written = make_figures(checkpoints, list(shards), split_list(samples), output,
                           fusion_out=fusion_weights, image_size=image_size,
                           cam_class=cam_class)
    for path in written:
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    reproduce_command()
