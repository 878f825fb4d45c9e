"""fer3d-predict: a trained model's expression for new raw scans, folders of them or shards.

Stage: user -> predictions. MODEL is a final model directory (``fer3d-train --final``), a
campaign run directory (its cells as an ensemble), one cell, a weights file, or a file of
fer3d-export (an ``.onnx`` needs no torch: prep + onnxruntime). ``--device``,
``--batch-size`` and ``--workers`` come from the settings table as in fer3d-train.
"""

from __future__ import annotations

import sys

import click

from fer3d.cli.options import apply, run_command, setting_option, setup_logging
from fer3d_data.clibase import CONTEXT_SETTINGS, Command, StrictInt, config_option

ENSEMBLE_OPTION = click.option(
    "--ensemble", type=StrictInt(min=1), default=None, metavar="K",
    help="the first K members only (a final model's, or a run's finished cells); default all")
PREDICT_OPTIONS = [
    setting_option("device"), setting_option("batch_size"),
    setting_option("workers", default=0, help="processes preparing raw scans (0: this one)"),
    setting_option("progress"),
]


def _summary(counts: dict) -> str:
    line = (f"{counts['rows']} input(s): {counts['rows'] - counts['errors']} predicted, "
            f"{counts['errors']} failed")
    if counts["labelled"]:
        line += (f"; with a known expression: {counts['correct']} of {counts['labelled']} "
                 f"correct ({100 * counts['correct'] / counts['labelled']:.1f} %)")
    return line


def _counted(rows, counts: dict):
    for row in rows:
        counts["rows"] += 1
        counts["errors"] += bool(row["error"])
        if row["label"] and row["predicted"] and f"p_{row['label']}" in row:
            counts["labelled"] += 1
            counts["correct"] += row["label"] == row["predicted"]
        yield row


@click.command("fer3d-predict", cls=Command, context_settings=CONTEXT_SETTINGS)
@click.argument("model", type=click.Path(exists=True), metavar="MODEL")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(), metavar="INPUT...")
@config_option()
@click.option("--output", "-o", default="-", show_default=True, type=click.Path(dir_okay=False),
              metavar="FILE", help="predictions (CSV, or JSON lines with --json); - is stdout")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of CSV")
@ENSEMBLE_OPTION
@click.option("--cam", "cam_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="write each input's per-branch Grad-CAM to DIR/<sample id>.png "
                   "(`fer3d[cam]`)")
@click.option("--strict", is_flag=True, help="exit 1 when any input failed")
@apply(PREDICT_OPTIONS)
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def predict_command(ctx, model, inputs, output, as_json, ensemble, cam_dir, strict, verbose,
                    device, batch_size, workers, progress):
    """Predict the expression of each INPUT with MODEL: raw scans (a BU-3DFE .wrl with its
    texture and optional .bnd, a Bosphorus .bnt with its .png and optional .lm3), folders of
    them, or shards. Raw scans are prepared as the model's training data were; a scan
    without landmarks gets dlib's (its row says so); a scan that fails is a row with its
    error. One row per input: sample id, predicted class, each class's probability (an
    ensemble: the mean of its members' softmaxes), landmark source, warning, error."""
    from fer3d.predict.predictor import load_model
    from fer3d.predict.rows import open_output, write_rows

    setup_logging(verbose)
    if cam_dir is not None:
        from fer3d_data.clibase import require

        require("pytorch_grad_cam", "cam", "--cam")
    predictor = load_model(model, ensemble=ensemble, device=device, batch_size=batch_size)
    counts = dict.fromkeys(("rows", "errors", "labelled", "correct"), 0)
    rows = predictor.rows(list(inputs), workers=workers, progress=progress, cam_dir=cam_dir)
    with open_output(output) as out:
        write_rows(_counted(rows, counts), out, as_json)
    click.echo(_summary(counts), err=True)
    if strict and counts["errors"]:
        ctx.exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-predict``."""
    return run_command(predict_command, argv)


if __name__ == "__main__":
    sys.exit(main())
