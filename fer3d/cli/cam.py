"""fer3d-cam: Grad-CAM of both branches for chosen samples (the paper's Fig. 6).

Stage: user -> figures. Weights are found and read by the one loader
(:func:`fer3d.train.checkpoint.load_model`), as for fer3d-eval.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fer3d.cli.options import (
    check_output_file,
    check_shards,
    run_command,
    setting_option,
    setup_logging,
    shards_argument,
)
from fer3d.errors import Fer3dError
from fer3d.paper.catalog import TARGETS
from fer3d.settings import check
from fer3d_data.clibase import Command, config_option, require, split_list


def _reproduce_pair(root: Path, shards: list[str]) -> list[Path]:
    """AFNet-M and its without-MA run of a fer3d-reproduce directory (one dataset)."""
    from fer3d.paper.reproduce import shards_by_dataset

    datasets = list(shards_by_dataset(shards))
    if len(datasets) != 1:
        raise Fer3dError(f"give shards of one dataset with a reproduce directory, got "
                         f"{', '.join(datasets)}")
    return [root / "runs" / datasets[0] / v for v, _ in TARGETS["fig6"].rows]


@click.command("fer3d-cam", cls=Command)
@click.argument("ckpt", type=click.Path(exists=True))
@shards_argument(required=True)
@config_option()
@click.option("--samples", required=True, metavar="ID,ID|@FILE",
              help="sample ids to show, comma-separated or one per line in FILE")
@click.option("--compare", type=click.Path(exists=True), metavar="CKPT2",
              help="a second checkpoint shown beside (e.g. the without-MA variant)")
@click.option("--output", "-o", default="cams.png", type=click.Path(dir_okay=False))
@click.option("--fusion-weights", type=click.Path(dir_okay=False), metavar="PNG",
              help="also plot the adaptive-fusion weights per class on the test fold")
@setting_option("image_size", default=None, help="default: the size the weights were trained at")
@click.option("--cam-class", type=click.Choice(["predicted", "true"]), default="predicted",
              help="class whose score the maps explain")
def cam_command(ckpt, shards, samples, compare, output, fusion_weights, image_size, cam_class):
    """Grad-CAM of each branch at its last block for the samples of SHARDS (the paper's
    Fig. 6). CKPT is a checkpoint (.pt/.safetensors, engine checkpoint or plain state dict),
    a cell or run directory, or a fer3d-reproduce directory (AFNet-M and without MA)."""
    require("pytorch_grad_cam", "cam", "fer3d-cam")
    from fer3d.paper.cam import make_figures

    setup_logging(False)
    check_shards(shards)
    check_output_file(output, "--output")
    check_output_file(fusion_weights, "--fusion-weights")

    if image_size is not None:
        image_size = check({"image_size": image_size})["image_size"]
    root = Path(ckpt)
    checkpoints = (_reproduce_pair(root, list(shards)) if (root / "runs").is_dir()
                   else [root] + ([Path(compare)] if compare else []))
    written = make_figures(checkpoints, list(shards), split_list(samples), output,
                           fusion_out=fusion_weights, image_size=image_size,
                           cam_class=cam_class)
    for path in written:
        click.echo(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-cam``."""
    return run_command(cam_command, argv)


if __name__ == "__main__":
    sys.exit(main())
