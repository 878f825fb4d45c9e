"""Compiling runs into the paper's tables and figures and into one markdown report.

Stage: runs -> files. :func:`build_target` makes one table or figure of the paper (Fig. 6
needs checkpoints and shards: :mod:`fer3d.cam`); :func:`write_report` compiles any set of
runs (``fer3d-report``): every table as markdown, LaTeX and CSV, titled confusion matrices,
the fusion-position plot, training curves and the parameter table.
"""

from __future__ import annotations

from pathlib import Path

from fer3d.catalog import TARGETS
from fer3d.reporting import figures, tables
from fer3d.reporting.runs import Run, unique_names

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


def params_rows(size: int = 224) -> list[dict]:
    from fer3d.reporting.params import measure_table4

    return measure_table4(size)


def build_target(target: str, runs: list[Run], out: Path, *, params_size: int = 224
                 ) -> list[Path]:
    """Files of one table or figure (table1-4, fig4, fig5) from ``runs`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if target == "table4":
        return write_table(tables.params_table(params_rows(params_size)), out, "table4")
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


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body.rstrip()}\n\n"


def write_report(runs: list[Run], out: Path, *, problems: list[str] = (),
                 params_size: int | None = 224) -> Path:
    """report.md with every table (also .tex/.csv under tables/) and figure (figures/).

    ``params_size`` None leaves the parameter table out (it needs torch).
    """
    tdir, fdir = out / "tables", out / "figures"
    fdir.mkdir(parents=True, exist_ok=True)
    text = ["# fer3d report\n\n", f"{len(runs)} run(s):\n\n"
            + "".join(f"- `{r.path}`: {r.title}\n" for r in runs) + "\n"]
    if problems:
        text.append(_section("Runs not included", "\n".join(f"- {p}" for p in problems)))
    main_tables = [("runs", tables.runs_table(runs)), ("per_class", tables.per_class_table(runs))]
    present = {r.variant for r in runs}
    main_tables += [(t, tables.target_table(t, runs)) for t in ("table1", "table2", "table3",
                                                                  "fig5")
                    if present & {v for v, _ in TARGETS[t].rows}]
    for stem, table in main_tables:
        write_table(table, tdir, stem)
        text.append(_section(table.title, tables.to_markdown(table, title=False)
                             + f"\n(tables/{stem}.tex, tables/{stem}.csv)"))
    folds = tables.per_fold_table(runs)
    write_table(folds, tdir, "per_fold")
    text.append(_section(folds.title, tables.to_markdown(folds, False) if len(folds.rows)
                         <= MAX_INLINE_FOLDS else f"{len(folds.rows)} rows: tables/per_fold.csv"))
    if params_size is not None:
        table4 = tables.params_table(params_rows(params_size))
        write_table(table4, tdir, "table4")
        text.append(_section(table4.title, tables.to_markdown(table4, title=False)))
    text.append(_figures(runs, fdir))
    path = out / "report.md"
    path.write_text("".join(text), encoding="utf-8")
    return path


def _figures(runs: list[Run], fdir: Path) -> str:
    lines = []
    if figures.save_fusion_positions(runs, fdir / "fig5.png"):
        lines.append("![Fig. 5](figures/fig5.png)\n")
    for run, stem in zip(runs, unique_names(runs)):
        figures.save_run_confusion(run, fdir / f"confusion-{stem}.png")
        lines.append(f"![confusion {stem}](figures/confusion-{stem}.png)\n")
        if figures.save_training_curves(run, fdir / f"curves-{stem}.png"):
            lines.append(f"![curves {stem}](figures/curves-{stem}.png)\n")
    return _section("Figures", "\n".join(lines))
