"""One of the paper's tables or figures from finished runs.

Stage: runs -> the paper's target files. :func:`build_target` makes table1-4, fig4 and
fig5 (Fig. 6 needs checkpoints and shards: :mod:`fer3d.paper.cam`) from whichever of the
target's runs are given; rows without a run show the published number beside "not run".
"""

from __future__ import annotations

from pathlib import Path

from fer3d.paper.catalog import TARGETS
from fer3d.report import figures, tables
from fer3d.report.build import write_table
from fer3d.report.runs import Run, unique_names


def build_target(target: str, runs: list[Run], out: Path, *, params_size: int = 224
                 ) -> list[Path]:
    """Files of one table or figure (table1-4, fig4, fig5) from ``runs`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if target == "table4":
        from fer3d.paper.params import measure_table4  # builds the models: torch

        return write_table(tables.params_table(measure_table4(params_size)), out, "table4")
    if target in ("table1", "table2", "table3"):
        return write_table(tables.target_table(target, runs), out, target)
    mine = [r for r in runs if r.variant in {v for v, _ in TARGETS[target].rows}]
    if target == "fig4":
        written = []
        for run, stem in zip(mine, unique_names(mine)):
            path = out / f"fig4-confusion-{stem}.png"
            figures.save_run_confusion(run, path)
            written.append(path)
        return written
    if target == "fig5":
        written = write_table(tables.target_table("fig5", runs), out, "fig5")
        if figures.save_fusion_positions(mine, out / "fig5.png"):
            written.append(out / "fig5.png")
        return written
    raise ValueError(f"build_target makes table1-4, fig4 and fig5, not {target!r}")
