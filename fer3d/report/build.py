"""Compiling runs into one markdown report, every table also as LaTeX and CSV.

Stage: runs -> files. :func:`write_report` compiles any set of runs (``fer3d-report``,
``fer3d-reproduce all``): every table as markdown, LaTeX and CSV (the paper's tables with
every number it prints and the paired differences of their ablation rows), each run's
settings beside the paper's, titled confusion matrices, Fig. 4's panels, the
fusion-position plot, training curves and, when given its rows, the parameter table
(measured by :mod:`fer3d.paper.params`).
"""

from __future__ import annotations

from pathlib import Path

from fer3d.paper.catalog import TARGETS
from fer3d.paper.recipes import paper_differences
from fer3d.report import figures, paper_tables, tables
from fer3d.report.runs import Run, unique_names

# Above this many rows the per-fold table lives in its CSV only, not in report.md.
MAX_INLINE_FOLDS = 40


def write_table(table: tables.Table, out: Path, stem: str) -> list[Path]:
    """``stem.md``, ``stem.tex`` and ``stem.csv`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, render in ((".md", tables.to_markdown), (".tex", tables.to_latex),
                           (".csv", tables.to_csv)):
        path = out / f"{stem}{suffix}"
        path.write_text(render(table), encoding="utf-8")
        written.append(path)
    return written


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body.rstrip()}\n\n"


def write_report(runs: list[Run], out: Path, *, problems: list[str] = (),
                 table4: list[dict] | None = None) -> Path:
    """report.md with every table (also .tex/.csv under tables/) and figure (figures/).

    ``table4``: rows of :func:`fer3d.paper.params.measure_table4`; None leaves it out.
    """
    tdir, fdir = out / "tables", out / "figures"
    fdir.mkdir(parents=True, exist_ok=True)
    text = ["# fer3d report\n\n", f"{len(runs)} run(s):\n\n"
            + "".join(f"- `{r.path}`: {r.title}\n" for r in runs) + "\n"]
    if problems:
        text.append(_section("Runs not included", "\n".join(f"- {p}" for p in problems)))
    text.append(_section("Settings beside the paper's", _settings(runs)))
    for stem, table in _main_tables(runs):
        write_table(table, tdir, stem)
        text.append(_section(table.title, tables.to_markdown(table, title=False)
                             + f"\n(tables/{stem}.tex, tables/{stem}.csv)"))
    folds = tables.per_fold_table(runs)
    write_table(folds, tdir, "per_fold")
    text.append(_section(folds.title, tables.to_markdown(folds, False) if len(folds.rows)
                         <= MAX_INLINE_FOLDS else f"{len(folds.rows)} rows: tables/per_fold.csv"))
    if table4 is not None:
        table = paper_tables.params_table(table4)
        write_table(table, tdir, "table4")
        text.append(_section(table.title, tables.to_markdown(table, title=False)))
    text.append(_figures(runs, fdir))
    path = out / "report.md"
    path.write_text("".join(text), encoding="utf-8")
    return path


def _main_tables(runs: list[Run]) -> list[tuple[str, tables.Table]]:
    """Every run, its scores, per class, then each paper table with at least one of its runs."""
    found = [("runs", tables.runs_table(runs)), ("scores", tables.scores_table(runs)),
             ("per_class", tables.per_class_table(runs))]
    present = {r.variant for r in runs}
    for target in ("table1", "table2", "table3", "fig4", "fig5"):
        if present & {v for v, _ in TARGETS[target].rows}:
            found.append((target, paper_tables.table1(runs) if target == "table1"
                          else paper_tables.target_table(target, runs)))
    return found


def _settings(runs: list[Run]) -> str:
    """What fer3d-train said at each run's start: settings that differ from the paper's or
    fill a gap it leaves, and the precision it trained in (config.json's resolved record);
    runs that say the same are listed together."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for run, stem in zip(runs, unique_names(runs)):
        found = paper_differences(run.config, run.dataset, run.resolved.get("amp"))
        groups.setdefault(tuple(found) or ("the paper's settings",), []).append(f"`{stem}`")
    return "\n".join(f"- {', '.join(stems)}:\n" + "".join(f"  - {line}\n" for line in lines)
                     for lines, stems in groups.items())


def _figures(runs: list[Run], fdir: Path) -> str:
    lines = []
    if figures.save_fig4(runs, fdir / "fig4.png"):
        lines.append("![Fig. 4](figures/fig4.png)\n")
    if figures.save_fusion_positions(runs, fdir / "fig5.png"):
        lines.append("![Fig. 5](figures/fig5.png)\n")
    for run, stem in zip(runs, unique_names(runs)):
        figures.save_run_confusion(run, fdir / f"confusion-{stem}.png")
        lines.append(f"![confusion {stem}](figures/confusion-{stem}.png)\n")
        if figures.save_training_curves(run, fdir / f"curves-{stem}.png"):
            lines.append(f"![curves {stem}](figures/curves-{stem}.png)\n")
    return _section("Figures", "\n".join(lines))
