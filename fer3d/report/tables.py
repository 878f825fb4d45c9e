"""Tables of finished runs beside the paper's numbers, as markdown, LaTeX and CSV.

Stage: runs -> tables. A :class:`Table` holds raw values (float, int, str or None for a
blank); each renderer formats them: 2 decimals in markdown and LaTeX, full precision in CSV.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from fer3d.paper.catalog import DATASET_TITLES, TARGETS, VARIANT_BY_NAME, published_accuracy
from fer3d.report.runs import Run

BLANK = "–"
DIFF = "ours − paper"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt(value, signed: bool = False) -> str:
    if value is None:
        return BLANK
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:+.2f}" if signed else f"{value:.2f}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _formatted(table: Table, row: list) -> list[str]:
    return [_fmt(v, signed=c == DIFF) for c, v in zip(table.columns, row)]


def to_markdown(table: Table, title: bool = True) -> str:
    """A pipe table; ``title`` False leaves the bold title out (a report's heading has it)."""
    lines = ([f"**{table.title}**", ""] if title else []) + [
             "| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(_formatted(table, row)) + " |" for row in table.rows]
    lines += [""] + [f"{note}  " for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "±": r"$\pm$", "×": r"$\times$",
                  "–": "--", "−": "$-$"}


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs table (``\\usepackage{booktabs}``); text columns left, numbers right."""
    align = "".join("r" if any(isinstance(r[i], (int, float)) for r in table.rows) else "l"
                    for i in range(len(table.columns)))
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(table.title)}}}",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_tex(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(v) for v in _formatted(table, row)) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(["" if v is None else v for v in row] for row in table.rows)
    return buf.getvalue()


# --------------------------------------------------------------------------- builders

ACCURACY_COLUMNS = ["accuracy (%)", "std (%)", "std over", "repeats × folds", "paper (%)",
                    DIFF]


def _accuracy_cells(run: Run) -> list:
    mean, std, over = run.accuracy()
    paper = published_accuracy(run.variant, run.dataset)
    diff = None if paper is None else mean - paper
    return [mean, std, over, f"{run.repeats} × {run.folds}", paper, diff]


def runs_table(runs: list[Run]) -> Table:
    """One row per run: accuracy mean ± std and the paper's number where it has one."""
    table = Table("Accuracy of every run", ["run", "variant", "paper row", "dataset",
                                            *ACCURACY_COLUMNS])
    for run in runs:
        tag = VARIANT_BY_NAME[run.variant].paper if run.variant in VARIANT_BY_NAME else ""
        table.rows.append([run.path.name, run.variant, tag or "extra",
                           DATASET_TITLES.get(run.dataset, run.dataset), *_accuracy_cells(run)])
    table.notes.append("std over repeats (ddof 1); with one repeat, std of the fold accuracies. "
                       f"{BLANK}: no published number we are certain of (docs/reproduce.md).")
    return table


def target_table(target: str, runs: list[Run]) -> Table:
    """The paper's table ``target`` from whichever of its runs are given, per dataset."""
    spec = TARGETS[target]
    table = Table(spec.title, ["row", "variant", "dataset", *ACCURACY_COLUMNS])
    datasets = sorted({r.dataset for r in runs})
    for dataset in datasets:
        for variant, row in spec.rows:
            mine = [r for r in runs if r.variant == variant and r.dataset == dataset]
            title = DATASET_TITLES.get(dataset, dataset)
            if mine:
                table.rows.append([row, variant, title, *_accuracy_cells(mine[0])])
            else:
                paper = published_accuracy(variant, dataset)
                table.rows.append([row, variant, title, None, None, "not run", None, paper,
                                   None])
    table.notes.append(f"{BLANK}: no run given, or no published number we are certain of.")
    return table


def scores_table(runs: list[Run]) -> Table:
    """Accuracy, balanced accuracy and macro-F1 of every run (fer3d.metrics.scores), each
    mean and std over repeats; blank for a summary written before they were recorded."""
    names = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
             ("macro_f1", "macro-F1"))
    table = Table("Accuracy, balanced accuracy and macro-F1 (%), mean and std over repeats",
                  ["variant", "dataset"] + [f"{title}{part}" for _, title in names
                                            for part in (" (%)", " std")])
    for run in runs:
        values = [run.summary.get(f"{key}_{part}") for key, _ in names for part in ("mean", "std")]
        table.rows.append([run.variant, DATASET_TITLES.get(run.dataset, run.dataset),
                           *[None if v is None else 100 * float(v) for v in values]])
    table.notes.append("balanced accuracy: mean recall over the expressions; macro-F1: mean "
                       "F1 over them; each pooled over a repeat's folds (docs/protocol.md).")
    return table


def per_class_table(runs: list[Run]) -> Table:
    names = list(runs[0].summary["class_names"]) if runs else []
    table = Table("Per-class accuracy (recall, %), pooled over repeats and folds",
                  ["variant", "dataset", *names])
    for run in runs:
        per = run.summary["per_class_accuracy"]
        table.rows.append([run.variant, DATASET_TITLES.get(run.dataset, run.dataset),
                           *[100 * float(per[n]) for n in names]])
    return table


def per_fold_table(runs: list[Run]) -> Table:
    table = Table("Per-fold test accuracy", ["variant", "dataset", "repeat", "fold",
                                             "correct", "total", "accuracy (%)"])
    for run in runs:
        for c in run.cells:
            table.rows.append([run.variant, DATASET_TITLES.get(run.dataset, run.dataset),
                               c["repeat"], c["fold"], c["correct"], c["total"],
                               100 * float(c["accuracy"])])
    return table


def params_table(rows: list[dict]) -> Table:
    """Table 4 from :func:`fer3d.paper.params.measure_table4` rows."""
    table = Table(TARGETS["table4"].title, ["row", "variant", "params", "fp32 MiB",
                                            "paper unit (MB)", "paper (MB)", DIFF])
    for r in rows:
        table.rows.append([r["paper_row"], r["model"], r["params"], r["fp32_mib"],
                           r["paper_unit_mb"], r["paper_mb"], r["diff_mb"]])
    table.notes.append("paper unit: torchsummary's Params size (MB) = per-call parameter "
                       "count × 4 / 2**20 (docs/model.md).")
    return table
