"""Tables of finished runs, as markdown, LaTeX and CSV.

Stage: runs -> tables. A :class:`Table` holds raw values (float, int, str, None for a
blank, and the marked kinds :class:`Signed`, :class:`Approx`, :class:`PValue` and
:class:`Interval`); each renderer formats them: 2 decimals in markdown and LaTeX, full
precision in CSV. The paper's own tables are built in :mod:`fer3d.report.paper_tables`.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from fer3d.paper.catalog import DATASET_TITLES, VARIANT_BY_NAME, published_accuracy
from fer3d.report.runs import Run
from fer3d.report.stats import format_p

BLANK = "–"
DIFF = "ours − paper"


class Signed(float):
    """A difference: shown with its sign (+0.01)."""


class Approx(float):
    """A number the paper prints as approximate: shown as ``≈ 327``."""


class PValue(float):
    """A p-value: 0.034, or < 0.001."""


class Interval(tuple):
    """(low, high) of a difference: shown as ``[-1.20, +3.40]``."""


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt(value) -> str:
    if value is None:
        return BLANK
    if isinstance(value, Interval):
        return f"[{value[0]:+.2f}, {value[1]:+.2f}]"
    if isinstance(value, PValue):
        return format_p(float(value))
    if isinstance(value, Approx):
        return f"≈ {value:g}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else (f"{value:+.2f}" if isinstance(value, Signed)
                                                else f"{value:.2f}")
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _formatted(row: list) -> list[str]:
    return [_fmt(v) for v in row]


def to_markdown(table: Table, title: bool = True) -> str:
    """A pipe table; ``title`` False leaves the bold title out (a report's heading has it)."""
    lines = ([f"**{table.title}**", ""] if title else []) + [
             "| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(_formatted(row)) + " |" for row in table.rows]
    lines += [""] + [f"{note}  " for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "±": r"$\pm$", "×": r"$\times$",
                  "–": "--", "−": "$-$", "≈": r"$\approx$", "Δ": r"$\Delta$", "<": "$<$"}


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs table (``\\usepackage{booktabs}``); text columns left, numbers right."""
    align = "".join("r" if any(isinstance(r[i], (int, float)) for r in table.rows) else "l"
                    for i in range(len(table.columns)))
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(table.title)}}}",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_tex(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(v) for v in _formatted(row)) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, Interval):
        return f"[{value[0]!r}, {value[1]!r}]"
    return f"≈ {value:g}" if isinstance(value, Approx) else value


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([_csv_value(v) for v in row] for row in table.rows)
    return buf.getvalue()


# --------------------------------------------------------------------------- builders

ACCURACY_COLUMNS = ["accuracy (%)", "spread (%)", "spread", "repeats × folds", "paper (%)",
                    DIFF]
SPREAD_NOTE = ("spread: the one figure of spread summary.json states, the std (ddof 1) of the "
               "repeats' accuracies, or of the folds' with one repeat.")


def accuracy_cells(run: Run | None, paper: float | None) -> list:
    """The ACCURACY_COLUMNS of ``run`` (None: "not run") beside the published ``paper``."""
    if run is None:
        return [None, None, "not run", None, paper, None]
    mean, spread, name = run.accuracy()
    diff = None if paper is None else Signed(mean - paper)
    return [mean, spread, name, f"{run.repeats} × {run.folds}", paper, diff]


SEQUENCE_COLUMNS = ["sequence accuracy (%)", "sequence spread (%)"]


def runs_table(runs: list[Run]) -> Table:
    """One row per run: accuracy mean ± spread and the paper's number where it prints one;
    the per-sequence votes' accuracy too when a run has sequences."""
    votes = any(run.sequence_accuracy() for run in runs)
    table = Table("Accuracy of every run", ["run", "variant", "paper row", "dataset",
                                            *ACCURACY_COLUMNS,
                                            *(SEQUENCE_COLUMNS if votes else [])])
    for run in runs:
        tag = VARIANT_BY_NAME[run.variant].paper if run.variant in VARIANT_BY_NAME else ""
        table.rows.append([run.path.name, run.variant, tag or "extra",
                           DATASET_TITLES.get(run.dataset, run.dataset),
                           *accuracy_cells(run, published_accuracy(run.variant, run.dataset)),
                           *((run.sequence_accuracy() or (None, None)) if votes else ())])
    table.notes += [SPREAD_NOTE, f"paper: the accuracy the paper prints for the variant (its "
                    f"Tables 1-3); {BLANK}: none printed (extras, Fig. 5's positions)."]
    if votes:
        table.notes.append("accuracy: per frame (scan); sequence accuracy: one vote per "
                           "sequence (the mean of its frames' softmaxes) or lone scan, its "
                           "spread as the accuracy's.")
    return table


def scores_table(runs: list[Run]) -> Table:
    """Accuracy, balanced accuracy and macro-F1 of every run (fer3d.metrics.scores), each
    its mean over repeats and its spread (the summary's one figure of spread, named in the
    notes); blank for a summary written before they were recorded."""
    names = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
             ("macro_f1", "macro-F1"))
    table = Table("Accuracy, balanced accuracy and macro-F1 (%), mean and spread",
                  ["variant", "dataset"] + [f"{title}{part}" for _, title in names
                                            for part in (" (%)", " ±")])
    for run in runs:
        values = [run.summary.get(f"{key}_{part}") for key, _ in names
                  for part in ("mean", "spread")]
        table.rows.append([run.variant, DATASET_TITLES.get(run.dataset, run.dataset),
                           *[None if v is None else 100 * float(v) for v in values]])
    table.notes += [SPREAD_NOTE, "balanced accuracy: mean recall over the classes; macro-F1: "
                    "mean F1 over them; each pooled over a repeat's folds (docs/protocol.md)."]
    return table


def per_class_table(runs: list[Run]) -> Table:
    """Columns: every class of the runs, in the order first met (blank: not a class of
    that run's)."""
    names = list(dict.fromkeys(n for run in runs for n in run.summary["class_names"]))
    table = Table("Per-class accuracy (recall, %), pooled over repeats and folds",
                  ["variant", "dataset", *names])
    for run in runs:
        per = run.summary["per_class_accuracy"]
        table.rows.append([run.variant, DATASET_TITLES.get(run.dataset, run.dataset),
                           *[100 * float(per[n]) if n in per else None for n in names]])
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
