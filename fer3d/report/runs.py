"""Reading finished campaigns for reports: settings, plan, summary, cell records, epoch logs.

Stage: run directories -> reports (torch-free). Every file is found and read through
:class:`fer3d.campaign.rundir.RunDir` (docs/protocol.md). A directory that cannot be read
raises :class:`~fer3d.errors.RunError` (a plan of another version
:class:`~fer3d.errors.PlanError`) naming it and the problem; :func:`load_runs` skips it with
that line, and :func:`find_runs` finds the runs inside a folder of runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer3d.campaign.protocol import FoldPlan
from fer3d.campaign.rundir import RunDir
from fer3d.errors import Fer3dError, RunError
from fer3d.paper.catalog import DATASET_TITLES, VARIANT_BY_NAME


@dataclass
class Run:
    """One finished campaign: its settings (and what they resolved to on its machine), its
    plan (subjects and folds), summary, per-cell records and epoch logs."""

    path: Path
    config: dict
    summary: dict
    cells: list[dict]
    epochs: dict[tuple[int, int], list[dict]] = field(default_factory=dict)
    plan: FoldPlan | None = None
    resolved: dict = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return str(self.summary.get("variant") or self.config.get("variant"))

    @property
    def dataset(self) -> str:
        return str(self.summary.get("preset") or self.config.get("preset"))

    @property
    def repeats(self) -> int:
        return int(self.summary["repeats"])

    @property
    def folds(self) -> int:
        return int(self.summary["folds"])

    @property
    def label(self) -> str:
        """Human name: the paper's row label when the variant has one, else its name."""
        known = VARIANT_BY_NAME.get(self.variant)
        return known.label if known else self.variant

    @property
    def title(self) -> str:
        return f"{self.label} ({self.variant}), {DATASET_TITLES.get(self.dataset, self.dataset)}"

    def accuracy(self) -> tuple[float, float | None, str]:
        """(mean %, spread %, its name) as summary.json states them (None: no spread)."""
        spread = self.summary["accuracy_spread"]
        return (100 * float(self.summary["accuracy_mean"]),
                None if spread is None else 100 * float(spread),
                str(self.summary["accuracy_spread_name"]))


    def sequence_accuracy(self) -> tuple[float, float | None] | None:
        """(mean %, spread %) of the per-sequence votes, the spread named as the accuracy's;
        None without sequences."""
        if "sequence_accuracy_mean" not in self.summary:
            return None
        spread = self.summary["sequence_accuracy_spread"]
        return (100 * float(self.summary["sequence_accuracy_mean"]),
                None if spread is None else 100 * float(spread))


def load_run(path: str | Path) -> Run:
    """Read a finished run directory; RunError naming the file at fault when it has no
    summary, a cell is missing, or a file holds something other than what fer3d writes."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise RunError(f"{run.path}: not a run directory")
    record = run.read_record()
    if not run.summary.is_file():
        raise RunError(f"{run.path}: no summary.json, the campaign has not finished "
                       f"({len(run.finished_cells())} cell(s) done); resume it first")
    summary = run.read_summary()
    if not isinstance(summary, dict) or not isinstance(record, dict):
        raise RunError(f"{run.path}: config.json or summary.json is not a JSON object")
    for key in ("accuracy_mean", "accuracy_spread", "repeats", "folds", "confusion_matrix",
                "per_class_accuracy", "class_names"):
        if key not in summary:
            raise RunError(f"{run.summary}: no {key!r} (an older summary: `fer3d-train "
                           f"--summarize {run.path}` rewrites it)")
    try:
        return _read_cells(run, record, summary)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # hand-edited, foreign
        raise RunError(f"{run.path}: a file does not hold what fer3d writes "
                       f"({type(exc).__name__}: {exc})") from None


def _read_cells(run: RunDir, record: dict, summary: dict) -> Run:
    # cells of more repeats than summarised (a resume still under way) are left out
    cells = [c for c in run.finished_cells() if c.repeat < int(summary["repeats"])]
    expected = int(summary["repeats"]) * int(summary["folds"])
    if len(cells) != expected:
        raise RunError(f"{run.path}: summary.json covers {expected} cells but {len(cells)} "
                       "finished cells were found")
    records = [c.read_record() for c in cells]
    for cell, fold in zip(cells, records):
        try:  # the numbers a report prints of each cell
            int(fold["correct"]), int(fold["total"]), float(fold["accuracy"])
        except (KeyError, TypeError, ValueError):
            raise RunError(f"{cell.record}: not a fold record (correct, total, accuracy)"
                           ) from None
    names = [str(n) for n in summary["class_names"]]
    matrix = np.asarray(summary["confusion_matrix"], dtype=np.float64)
    if matrix.shape != (len(names), len(names)):
        raise RunError(f"{run.summary}: confusion_matrix of shape {matrix.shape}, expected "
                       f"{len(names)} x {len(names)}")
    for name in names:  # raises unless each class's recall is a number
        float(summary["per_class_accuracy"][name])
    found = Run(run.path, record.get("config", {}), summary, records,
                {(c.repeat, c.fold): c.read_epochs() for c in cells}, plan=run.read_plan(),
                resolved=record.get("resolved", {}))
    found.accuracy()  # every number a report prints is readable now, not half-way through
    return found


def find_runs(paths: list[str | Path], depth: int = 3) -> list[Path]:
    """Run directories: each path that is one, else those up to ``depth`` folders inside it
    (``fer3d-report runs/``, a fer3d-reproduce OUT); a path holding none is kept, so that
    loading it says why."""
    found = []
    for p in map(Path, paths):
        inside = [] if RunDir(p).exists() else sorted(
            d for n in range(1, depth + 1) for d in p.glob("/".join(["*"] * n))
            if d.is_dir() and RunDir(d).exists())
        found += inside or [p]
    return found


def load_runs(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Every readable run, and one line per directory that could not be read."""
    runs, problems = [], []
    for p in paths:
        try:
            runs.append(load_run(p))
        except Fer3dError as exc:  # a missing file, a plan of another version, ...
            problems.append(str(exc))
    return runs, problems


def unique_names(runs: list[Run]) -> list[str]:
    """File-name stem per run, ``variant-dataset``, numbered where two runs share one."""
    stems = [f"{r.variant}-{r.dataset}" for r in runs]
    seen: dict[str, int] = {}
    out = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if stems.count(stem) == 1 else f"{stem}-{seen[stem]}")
    return out
