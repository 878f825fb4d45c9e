"""fer3d-report: finished run directories compiled into one report, or two runs compared.

Stage: user -> report. Torch is imported only to measure the parameter table (--params).
``--compare RUN_A RUN_B`` prints their difference with its 95 % interval and p-value
(:mod:`fer3d.report.compare`), paired when they share one plan; runs on other folds are
refused unless ``--unpaired`` is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fer3d.cli.options import make_output_folder, run_command
from fer3d.errors import RunError
from fer3d_data.clibase import Command, config_option

RUN_DIR = click.Path(exists=True, file_okay=False)


@click.command("fer3d-report", cls=Command)
@click.argument("runs", nargs=-1, type=RUN_DIR)
@config_option()
@click.option("--out", "-o", type=click.Path(), metavar="DIR",
              help="report directory (required unless --compare)")
@click.option("--params/--no-params", default=True,
              help="include the parameter table (Table 4; builds the three models)")
@click.option("--strict", is_flag=True, help="fail if any RUN cannot be read")
@click.option("--compare", nargs=2, type=RUN_DIR, default=None, metavar="RUN_A RUN_B",
              help="print RUN_A − RUN_B with its 95 % interval and p (corrected resampled "
                   "t-test) instead of a report")
@click.option("--unpaired", is_flag=True,
              help="with --compare: compare runs whose plans (subjects, folds) differ, "
                   "unpaired")
def report_command(runs, out, params, strict, compare, unpaired):
    """Compile finished run directories RUN... into DIR/report.md, with tables (markdown,
    LaTeX, CSV) under DIR/tables and figures under DIR/figures; or, with --compare, test
    the difference between two runs."""
    from fer3d.report import find_runs, load_runs, write_report

    if compare:
        return _compare(*compare, unpaired)
    if not runs or not out:
        raise click.UsageError("give RUN... and --out DIR (or --compare RUN_A RUN_B)")
    make_output_folder(out, "--out")
    found, problems = load_runs(find_runs(runs))
    for line in problems:
        click.echo(f"fer3d-report: skipped {line}", err=True)
    if not found or (strict and problems):
        raise RunError(f"{len(problems)} of {len(runs)} run(s) could not be read")
    path = write_report(found, Path(out), problems=problems, table4=_table4() if params else None)
    click.echo(f"wrote {path}")


def _compare(run_a: str, run_b: str, unpaired: bool) -> None:
    from fer3d.report import load_run
    from fer3d.report.compare import compare, describe

    click.echo(describe(compare(load_run(run_a), load_run(run_b), unpaired=unpaired)))


def _table4() -> list[dict]:
    from fer3d.paper.params import measure_table4

    return measure_table4()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-report``."""
    return run_command(report_command, argv)


if __name__ == "__main__":
    sys.exit(main())
