"""fer3d-eval: test saved weights on shard samples.

Stage: user -> evaluation. Options come from the settings table (:mod:`fer3d.settings`), so
``--batch-size`` or ``--device`` mean and accept here what they do in fer3d-train.
"""

from __future__ import annotations

import sys

import click

from fer3d.cli.options import (
    apply,
    check_output_file,
    check_shards,
    run_command,
    setting_option,
    setup_logging,
    shards_argument,
)
from fer3d.settings import check
from fer3d_data.clibase import CONTEXT_SETTINGS, Command, split_list

EVAL_OPTIONS = [
    setting_option("variant", default=None, help="refuse weights of another variant"),
    setting_option("preset"),
    setting_option("image_size", default=None, help="default: the size the weights were "
                   "trained at"),
    setting_option("batch_size"), setting_option("device"), setting_option("amp"),
    setting_option("channels_last"), setting_option("workers", default=0),
]


@click.command("fer3d-eval", cls=Command, context_settings=CONTEXT_SETTINGS)
@click.argument("checkpoint", type=click.Path(exists=True), metavar="CKPT")
@shards_argument(required=True)
@click.option("--subjects", default=None, metavar="A,B,...|@FILE",
              help="subjects to test (default: the weights' test subjects)")
@apply(EVAL_OPTIONS)
@click.option("--per-sequence", is_flag=True, default=False,
              help="also vote per sequence: the mean of its frames' softmaxes (a sample "
                   "outside any sequence votes alone)")
@click.option("--out", default=None, metavar="JSON", help="write the result here")
def eval_command(checkpoint, shards, subjects, per_sequence, out, **kw):
    """Evaluate saved weights (a cell's weights.pt or checkpoint.pt, a cell directory or a
    run directory's first cell) on shard samples (default: the test subjects stored with
    the weights)."""
    from fer3d.campaign.atomic import write_json
    from fer3d.predict.evaluate import evaluate_checkpoint
    from fer3d.report.text import format_summary

    setup_logging(False)
    check_shards(shards)
    check_output_file(out, "--out")
    values = check({k: v for k, v in kw.items() if v is not None})
    result = evaluate_checkpoint(checkpoint, list(shards), subjects=split_list(subjects),
                                 per_sequence=per_sequence, **values)
    click.echo(format_summary(result))
    if out:
        write_json(result, out)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-eval``."""
    return run_command(eval_command, argv)


if __name__ == "__main__":
    sys.exit(main())
