"""The paper's tables rebuilt from our runs: every number the paper prints beside ours, and
each ablation row tested against its reference.

Stage: runs -> the paper's tables (torch-free). Every table lists both datasets, whichever
were run. Table 1 carries the 13 other methods as published (not run by fer3d) above our
2D, 3D and 2D+3D rows; Tables 2 and 3 and Figs. 4 and 5 give each row's paired difference
from its reference (:data:`fer3d.paper.catalog.Target.pairs`, :mod:`fer3d.report.compare`)
beside the paper's; Table 4 carries the other methods' published sizes. Figs. 4 and 5
print no number in the paper: their "paper" cells stay blank.
"""

from __future__ import annotations

from fer3d.paper.catalog import (
    DATASET_TITLES,
    DATASETS,
    OTHER_METHODS,
    OTHER_SIZES,
    TARGETS,
    VARIANT_BY_NAME,
    published_accuracy,
    published_delta,
)
from fer3d.report.compare import compare, plan_mismatch
from fer3d.report.runs import Run
from fer3d.report.tables import (
    ACCURACY_COLUMNS,
    BLANK,
    DIFF,
    SPREAD_NOTE,
    Approx,
    Interval,
    PValue,
    Signed,
    Table,
    accuracy_cells,
)

NOT_RUN = "published, not run"
PAIRED_COLUMNS = ["vs", "Δ (points)", "95 % interval", "p", "paper Δ"]
PAIRED_NOTE = ("Δ: mean over the cells of (row − vs) test accuracy, in points; 95 % "
               "interval and p: corrected resampled t-test (Nadeau and Bengio, 2003: variance "
               "× (1/J + n_test/n_train) over the J = repeats × folds differences; "
               "docs/reproduce.md). paper Δ: the same difference in the paper's numbers.")


def _run_of(runs: list[Run], variant: str, dataset: str) -> Run | None:
    return next((r for r in runs if r.variant == variant and r.dataset == dataset), None)


def _row_label(target: str, index: int, label: str, dataset: str) -> str:
    """Fig. 4's panels are lettered (a)-(d): one model per row of panels, one dataset per
    column; the other targets keep the paper's row label."""
    if target != "fig4":
        return label
    return f"({'abcd'[index * len(DATASETS) + DATASETS.index(dataset)]}) {label}"


def _paired_cells(target: str, variant: str, dataset: str, runs: list[Run]) -> list:
    ref = dict(TARGETS[target].pairs).get(variant)
    if ref is None:
        return [None] * len(PAIRED_COLUMNS)
    paper = published_delta(variant, ref, dataset, target)
    a, b = _run_of(runs, variant, dataset), _run_of(runs, ref, dataset)
    vs = dict(TARGETS[target].rows)[ref]
    if a is None or b is None:
        return [vs, None, None, None, None if paper is None else Signed(paper)]
    c = compare(a, b, unpaired=True)
    r = c.result
    return [vs if c.paired else f"{vs} (unpaired)", Signed(r.mean),
            None if r.low is None else Interval((r.low, r.high)),
            None if r.p is None else PValue(r.p), None if paper is None else Signed(paper)]


def pairing_note(target: str, runs: list[Run]) -> list[str]:
    """Per dataset: do the target's runs share one plan? (The paired test needs it.)"""
    notes = []
    for dataset in DATASETS:
        mine = [r for r in runs if r.dataset == dataset and r.variant in dict(
            TARGETS[target].rows)]
        if len(mine) < 2:
            continue
        odd = [(r, plan_mismatch(mine[0], r)) for r in mine[1:]]
        odd = [f"{r.variant} ({why})" for r, why in odd if why]
        title = DATASET_TITLES[dataset]
        notes.append(f"{title}: " + (
            f"the {len(mine)} runs share one plan (folds.json: the same subjects and the "
            "same folds in every repeat): the differences are paired." if not odd else
            f"not one plan: {', '.join(odd)} differ from {mine[0].variant}; those "
            "comparisons are unpaired (corrected Welch test), with less power."))
    return notes


def target_table(target: str, runs: list[Run]) -> Table:
    """Table 2, 3, Fig. 4 or Fig. 5: our runs beside the printed numbers, per dataset, each
    ablation row with its paired difference from its reference."""
    spec = TARGETS[target]
    table = Table(spec.title, ["row", "variant", "dataset", *ACCURACY_COLUMNS,
                               *PAIRED_COLUMNS])
    for dataset in DATASETS:
        for i, (variant, label) in enumerate(spec.rows):
            table.rows.append([_row_label(target, i, label, dataset), variant,
                               DATASET_TITLES[dataset],
                               *accuracy_cells(_run_of(runs, variant, dataset),
                                               published_accuracy(variant, dataset, target)),
                               *_paired_cells(target, variant, dataset, runs)])
    source = spec.title.split(":")[0]  # "Table 2", "Fig. 5"
    printed = (f"paper: as printed in the paper's {source}" if target.startswith("table")
               else f"paper: {BLANK}, the paper draws {source} without printing its values")
    table.notes += [f"{printed}; {DIFF}: our accuracy minus it.", SPREAD_NOTE, PAIRED_NOTE,
                    *pairing_note(target, runs)]
    return table


TABLE1_COLUMNS = ["method", "year", "data", "feature", "variant", "dataset",
                  *ACCURACY_COLUMNS]


def table1(runs: list[Run]) -> Table:
    """Table 1: the other methods as published (not run), then our 2D, 3D and 2D+3D rows
    (Table 3's single-modality rows with MA, and AFNet-M), per dataset."""
    table = Table(TARGETS["table1"].title, list(TABLE1_COLUMNS))
    for dataset in DATASETS:
        title, k = DATASET_TITLES[dataset], DATASETS.index(dataset)
        for m in OTHER_METHODS:
            table.rows.append([m.label, m.year, m.data, m.feature, NOT_RUN, title, None, None,
                               None, None, m.accuracy[k], None])
        for variant, data in TARGETS["table1"].rows:
            table.rows.append(["Ours (AFNet-M)", BLANK, data, "DL", variant, title,
                               *accuracy_cells(_run_of(runs, variant, dataset),
                                               published_accuracy(variant, dataset,
                                                                  "table1"))])
    table.notes += [f"paper: as printed in the paper's Table 1 ({BLANK}: not reported there). "
                    f"The other methods' rows are {NOT_RUN} by fer3d; HC hand-crafted, DL deep "
                    "features; [n]: the paper's reference.",
                    f"Ours 2D / 3D: {VARIANT_BY_NAME['texture_only_ma'].label} and "
                    f"{VARIANT_BY_NAME['depth_only_ma'].label} (Table 3's rows with MA).",
                    SPREAD_NOTE]
    return table


def params_table(rows: list[dict]) -> Table:
    """Table 4: :func:`fer3d.paper.params.measure_table4` rows, then the other methods'
    published sizes (not counted by fer3d)."""
    table = Table(TARGETS["table4"].title, ["row", "year", "data", "variant", "params",
                                            "fp32 MiB", "paper unit (MB)", "paper (MB)", DIFF])
    for m in OTHER_SIZES:
        table.rows.append([m.label, m.year, m.data, "published, not counted", None, None,
                           None, Approx(m.size_mb), None])
    for r in rows:
        table.rows.append([r["paper_row"], BLANK, "2D+3D", r["model"], r["params"],
                           r["fp32_mib"], r["paper_unit_mb"], r["paper_mb"],
                           Signed(r["diff_mb"])])
    table.notes += ["paper unit: torchsummary's Params size (MB) = per-call parameter count "
                    "× 4 / 2**20 (docs/model.md).",
                    "≈: the paper prints the other methods' sizes as approximate."]
    return table
