"""fer3d-report: finished run directories compiled into one report.

Stage: user -> report. Torch is imported only to measure the parameter table (--params).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fer3d.cli.options import make_output_folder, run_command
from fer3d.errors import RunError
from fer3d_data.clibase import Command, config_option


@click.command("fer3d-report", cls=Command)
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@config_option()
@click.option("--out", "-o", required=True, type=click.Path(), metavar="DIR")
@click.option("--params/--no-params", default=True,
              help="include the parameter table (Table 4; builds the three models)")
@click.option("--strict", is_flag=True, help="fail if any RUN cannot be read")
def report_command(runs, out, params, strict):
    """Compile finished run directories RUN... into DIR/report.md, with tables (markdown,
    LaTeX, CSV) under DIR/tables and figures under DIR/figures."""
    from fer3d.report import find_runs, load_runs, write_report

    make_output_folder(out, "--out")
    found, problems = load_runs(find_runs(runs))
    for line in problems:
        click.echo(f"fer3d-report: skipped {line}", err=True)
    if not found or (strict and problems):
        raise RunError(f"{len(problems)} of {len(runs)} run(s) could not be read")
    path = write_report(found, Path(out), problems=problems, table4=_table4() if params else None)
    click.echo(f"wrote {path}")


def _table4() -> list[dict]:
    from fer3d.paper.params import measure_table4

    return measure_table4()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-report``."""
    return run_command(report_command, argv)


if __name__ == "__main__":
    sys.exit(main())
