"""One of the paper's tables or figures from finished runs.

Stage: runs -> the paper's target files. :func:`build_target` makes table1-4, fig4 and
fig5 (Fig. 6 needs checkpoints and shards: :mod:`fer3d.paper.cam`) from whichever of the
target's runs are given: every number the paper prints beside ours, rows without a run
marked "not run", each ablation row with its paired difference
(:mod:`fer3d.report.paper_tables`).
"""

from __future__ import annotations

from pathlib import Path

from fer3d.report import figures, paper_tables
from fer3d.report.build import write_table
from fer3d.report.runs import Run


def build_target(target: str, runs: list[Run], out: Path, *, params_size: int = 224
                 ) -> list[Path]:
    """Files of one table or figure (table1-4, fig4, fig5) from ``runs`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if target == "table4":
        from fer3d.paper.params import measure_table4  # builds the models: torch

        return write_table(paper_tables.params_table(measure_table4(params_size)), out,
                           "table4")
    if target == "table1":
        return write_table(paper_tables.table1(runs), out, target)
    if target not in ("table2", "table3", "fig4", "fig5"):
        raise ValueError(f"build_target makes table1-4, fig4 and fig5, not {target!r}")
    written = write_table(paper_tables.target_table(target, runs), out, target)
    draw = {"fig4": figures.save_fig4, "fig5": figures.save_fusion_positions}.get(target)
    if draw is not None and draw(runs, out / f"{target}.png"):
        written.append(out / f"{target}.png")
    return written
