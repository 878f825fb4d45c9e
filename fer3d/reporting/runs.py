"""Reading finished campaign directories as the engine writes them (docs/protocol.md).

Stage: run directories -> reports. Torch-free: config.json, folds.json, summary.json and,
per cell ``cells/r{r}_f{f}/``, fold.json (test predictions) and epochs.csv (per-epoch log).
A directory that cannot be read raises :class:`RunError` naming it and the problem.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer3d.catalog import DATASET_TITLES, VARIANT_BY_NAME
from fer3d_data.errors import Fer3dDataError

_CELL = re.compile(r"r(\d+)_f(\d+)$")


class RunError(Fer3dDataError):
    """A run directory is missing a file or holds one that cannot be read."""


@dataclass
class Run:
    """One finished campaign: its settings, summary, per-cell records and epoch logs."""

    path: Path
    config: dict
    summary: dict
    cells: list[dict]
    epochs: dict[tuple[int, int], list[dict]] = field(default_factory=dict)

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

    def accuracy(self) -> tuple[float, float, str]:
        """(mean %, std %, over what): std over repeats, or over folds with one repeat."""
        mean = 100 * float(self.summary["accuracy_mean"])
        if self.repeats > 1:
            return mean, 100 * float(self.summary["accuracy_std"]), "repeats"
        accs = [c["accuracy"] for c in self.cells if c["total"]]
        std = 100 * float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
        return mean, std, "folds"


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read ({exc})") from None


def _read_epochs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in rows]
    except ValueError as exc:
        raise RunError(f"{path}: not a numeric epoch log ({exc})") from None


def load_run(path: str | Path) -> Run:
    """Read a finished run directory; RunError if it has no summary or a cell is missing."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: not a run directory")
    config = _read_json(path / "config.json").get("config", {})
    if not (path / "summary.json").is_file():
        done = len(list(path.glob("cells/*/fold.json")))
        raise RunError(f"{path}: no summary.json, the campaign has not finished "
                       f"({done} cell(s) done); resume it first")
    summary = _read_json(path / "summary.json")
    for key in ("accuracy_mean", "accuracy_std", "repeats", "folds", "confusion_matrix",
                "per_class_accuracy", "class_names"):
        if key not in summary:
            raise RunError(f"{path / 'summary.json'}: no {key!r}")
    cells, epochs = [], {}
    for cell_dir in sorted(path.glob("cells/r*_f*")):
        match = _CELL.search(cell_dir.name)
        if not match or not (cell_dir / "fold.json").is_file():
            continue
        key = (int(match[1]), int(match[2]))
        record = _read_json(cell_dir / "fold.json")
        if int(record["repeat"]) >= int(summary["repeats"]):
            continue  # a cell of more repeats than summarised (a resume still under way)
        cells.append(record)
        epochs[key] = _read_epochs(cell_dir / "epochs.csv")
    expected = int(summary["repeats"]) * int(summary["folds"])
    if len(cells) != expected:
        raise RunError(f"{path}: summary.json covers {expected} cells but {len(cells)} "
                       "cells/*/fold.json were found")
    cells.sort(key=lambda c: (c["repeat"], c["fold"]))
    return Run(path, config, summary, cells, epochs)


def load_runs(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Every readable run, and one line per directory that could not be read."""
    runs, problems = [], []
    for p in paths:
        try:
            runs.append(load_run(p))
        except RunError as exc:
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
