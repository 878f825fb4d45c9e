"""fer3d-export: a trained model as an ONNX file or a torch.export program.

Stage: user -> portable model. The file holds every member and the model card; it is
checked against PyTorch on the same inputs before the command reports success.
"""

from __future__ import annotations

import sys

import click

from fer3d.cli.options import run_command, setup_logging
from fer3d.cli.predict import ENSEMBLE_OPTION
from fer3d_data.clibase import Command, StrictInt


@click.command("fer3d-export", cls=Command)
@click.argument("model", type=click.Path(exists=True), metavar="MODEL")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              metavar="FILE.onnx|FILE.pt2", help="ONNX (`fer3d[onnx]`) or torch.export archive")
@ENSEMBLE_OPTION
@click.option("--opset", type=StrictInt(min=17), default=18, show_default=True,
              help="ONNX opset")
def export_command(model, output, ensemble, opset):
    """Export MODEL (a final model, run or cell directory, or weights file) to FILE: the
    three named inputs (texture, depth, mask) with a dynamic batch, every member's logits
    as output (N, members, classes), the model card inside. fer3d-predict FILE.onnx then
    runs with prep and onnxruntime alone (no torch)."""
    from fer3d.predict.export import check_export, export_model
    from fer3d.predict.predictor import load_model

    setup_logging(False)
    predictor = load_model(model, ensemble=ensemble, device="cpu")
    path = export_model(predictor, output, opset=opset)
    gap = check_export(predictor, path)
    click.echo(f"wrote {path} ({len(predictor.card['members'])} member(s), "
               f"{predictor.image_size} px); largest logit difference to PyTorch {gap:.1e}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-export``."""
    return run_command(export_command, argv)


if __name__ == "__main__":
    sys.exit(main())
