"""fer3d-reproduce: every campaign a table or figure of the paper needs, then the target.

Stage: user -> reproduction. The settings a user may override are options generated from
the settings table (:mod:`fer3d.settings`), defaulting to the recipe's values; ``--config
FILE`` layers under the flags. Importing this module and ``--help`` never import torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fer3d.cli.options import (
    apply,
    check_shards,
    make_output_folder,
    run_command,
    setting_option,
    setup_logging,
    shards_argument,
)
from fer3d.paper.catalog import TARGET_NAMES, TARGETS
from fer3d.settings import check
from fer3d_data.clibase import Command, StrictInt, config_option, require

FROM_RECIPE = "default: the recipe's"
OVERRIDES = [setting_option(name, default=None, help=f"{help} ({FROM_RECIPE})") for name, help in (
    ("repeats", "protocol repeats"), ("folds", "k of k-fold"), ("epochs", "epochs per cell"),
    ("image_size", "input side S"), ("batch_size", "training batch"),
    ("subjects", "subjects to select"),
    ("pretrained", "resnet18 weights of both branches, never downloaded"),
    ("keep", "what a finished cell keeps; first (r0 f0's weights) unless the recipe says"))] + [
    setting_option("device"),
    setting_option("pack", default=None, help="cells trained at once as one network "
                   "(default: fer3d-train's, auto)"),
    setting_option("workers", default=None, help="DataLoader workers (default: fer3d-train's)"),
    setting_option("progress", help="per-cell progress bars"),
]


@click.command("fer3d-reproduce", cls=Command)
@click.argument("target", type=click.Choice(TARGET_NAMES))
@shards_argument()
@config_option()
@click.option("--out", "-o", required=True, type=click.Path(), metavar="DIR",
              help="runs go to DIR/runs/<dataset>/<variant>, each target to DIR/<target>")
@click.option("--recipe", default="paper", show_default=True,
              help="shipped recipe name or a YAML file of fer3d-train settings")
@apply(OVERRIDES)
@click.option("--cam-samples", type=StrictInt(min=1), default=6,
              help="Fig. 6: test samples in the Grad-CAM montage (one per class first)")
@click.option("-v", "--verbose", is_flag=True)
def reproduce_command(target, shards, out, recipe, cam_samples, verbose, **overrides):
    """Run every campaign TARGET needs on SHARDS (one or both datasets), then build TARGET
    beside the paper's numbers. Rerunning the same command resumes (finished cells are
    kept); a run of other settings is refused, never reused.

    TARGET: table1 (AFNet-M), table2 (fusion strategies, no MA), table3 (MA ablation),
    table4 (parameters, no training, no SHARDS needed), fig4 (confusion matrices), fig5
    (fusion positions), fig6 (Grad-CAM), all. Costs and choices: docs/reproduce.md.
    """
    from fer3d.paper.reproduce import reproduce

    setup_logging(verbose)
    if (TARGETS.get(target) is None or TARGETS[target].trains) and not shards:
        raise click.UsageError(f"{target} trains models: give the shard file(s)")
    check_shards(shards)
    make_output_folder(out, "--out")
    if target in ("fig6", "all"):
        require("pytorch_grad_cam", "cam", "Fig. 6 (Grad-CAM)")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    check(overrides)  # every bad value named before any campaign; "none" stays a value
    outcome = reproduce(target, list(shards), out, recipe=recipe, overrides=overrides,
                        cam_samples=cam_samples)
    if target == "table4":
        click.echo(Path(out, "table4", "table4.md").read_text(encoding="utf-8"))
    for path in outcome.files:
        click.echo(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-reproduce``."""
    return run_command(reproduce_command, argv, resumable=True)


if __name__ == "__main__":
    sys.exit(main())
