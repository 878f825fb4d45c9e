"""fer3d.report: finished runs compiled into tables and figures beside the paper's numbers.

Stage: run directories -> reports (torch-free). :mod:`~fer3d.report.runs` reads finished
runs through the run directory's owner, :mod:`~fer3d.report.tables` builds tables and
renders them as markdown, LaTeX and CSV, :mod:`~fer3d.report.paper_tables` rebuilds the
paper's tables with every number it prints, :mod:`~fer3d.report.compare` pairs two runs and
:mod:`~fer3d.report.stats` tests their difference (corrected resampled t-test),
:mod:`~fer3d.report.figures` draws titled confusion matrices
(:mod:`~fer3d.report.confusion`), Fig. 4's panels, the fusion-position plot and training
curves, :mod:`~fer3d.report.text` prints summaries, and :mod:`~fer3d.report.build` writes
a whole report.
"""

from fer3d.report.build import write_report, write_table
from fer3d.report.runs import Run, find_runs, load_run, load_runs

__all__ = ["Run", "find_runs", "load_run", "load_runs", "write_report", "write_table"]
