"""fer3d.reporting: finished runs compiled into the paper's tables and figures.

Stage: run directories -> reports. :mod:`~fer3d.reporting.runs` reads run directories (torch-
free), :mod:`~fer3d.reporting.tables` builds tables beside the paper's numbers and renders
them as markdown, LaTeX and CSV, :mod:`~fer3d.reporting.figures` draws the titled confusion
matrices, the fusion-position plot and training curves, :mod:`~fer3d.reporting.params` the
parameter table (torch), and :mod:`~fer3d.reporting.build` writes a target or a whole report.
"""

from fer3d.reporting.build import build_target, write_report, write_table
from fer3d.reporting.runs import Run, RunError, load_run, load_runs

__all__ = ["Run", "RunError", "build_target", "load_run", "load_runs", "write_report",
           "write_table"]
