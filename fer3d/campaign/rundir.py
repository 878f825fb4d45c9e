"""The run directory: the one owner of its layout, its file names and their readers.

Stage: campaign bookkeeping (torch-free). Every other module asks :class:`RunDir` and
:class:`CellDir` where a file is and reads it through them; none spells a path itself::

    RUN/config.json             settings, resolved device and precision, versions
    RUN/folds.json              the plan: subjects, samples, folds of every repeat
    RUN/claims/c{cell}.claim    a live process trains cell ``repeat * k + fold``
    RUN/cells/r{r}_f{f}/        one cell: fold.json (test record; its presence = finished),
                                epochs.csv, logits.npz, weights.pt, checkpoint.pt, best.pt
    RUN/tensorboard/r{r}_f{f}/  per-epoch scalars (--tensorboard)
    RUN/summary.json            once every cell is done (summary.partial.json: --partial)
    RUN/confusion.png           the pooled confusion matrix

Writes go through :mod:`fer3d.campaign.atomic` (temporary name, then rename). A file that
is missing or unreadable raises :class:`~fer3d.errors.RunError` naming it.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from fer3d.campaign.atomic import atomic_write, publish_once, write_json
from fer3d.campaign.protocol import FoldPlan, plan_from_dict
from fer3d.errors import RunError

_CELL_NAME = re.compile(r"^r(\d+)_f(\d+)$")
# Weights files a model can be loaded from, in the order a cell directory is searched.
WEIGHT_NAMES = ("weights.pt", "checkpoint.pt", "weights.safetensors", "model.safetensors")


def read_json(path: str | os.PathLike):
    """A JSON file's content; RunError naming ``path`` when missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read ({exc})") from None


def cell_name(repeat: int, fold: int) -> str:
    return f"r{repeat}_f{fold}"


def parse_cell_name(name: str) -> tuple[int, int] | None:
    """``r3_f7`` -> (3, 7); None for any other name."""
    match = _CELL_NAME.match(name)
    return (int(match[1]), int(match[2])) if match else None


class CellDir:
    """The directory of one (repeat, fold) cell and its files."""

    def __init__(self, path: Path, repeat: int, fold: int):
        self.path, self.repeat, self.fold = path, repeat, fold
        self.record = path / "fold.json"
        self.epochs = path / "epochs.csv"
        self.logits = path / "logits.npz"
        self.weights = path / "weights.pt"
        self.resume = path / "checkpoint.pt"
        self.best = path / "best.pt"

    @property
    def done(self) -> bool:
        """A finished cell is one whose fold.json exists (written last)."""
        return self.record.exists()

    def read_record(self) -> dict:
        return read_json(self.record)

    def write_record(self, record: dict) -> None:
        write_json(record, self.record)

    def read_epochs(self, upto: int | None = None) -> list[dict]:
        """Rows of epochs.csv (epoch as int, the rest as float), epochs <= ``upto``."""
        if not self.epochs.is_file():
            return []
        with open(self.epochs, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        try:
            rows = [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()
                     if v not in (None, "")} for row in rows]
        except (ValueError, TypeError) as exc:
            raise RunError(f"{self.epochs}: not a numeric epoch log ({exc})") from None
        return [r for r in rows if upto is None or r["epoch"] <= upto]

    def write_epochs(self, rows: list[dict]) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        atomic_write(self.epochs, write)


class RunDir:
    """A campaign's run directory (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.folds = self.path / "folds.json"
        self.summary = self.path / "summary.json"
        self.partial_summary = self.path / "summary.partial.json"
        self.confusion = self.path / "confusion.png"
        self.claims = self.path / "claims"

    def __repr__(self) -> str:
        return f"RunDir({os.fspath(self.path)!r})"

    def exists(self) -> bool:
        """True when a campaign was planned here (config.json written)."""
        return self.config.exists()

    def cell(self, repeat: int, fold: int) -> CellDir:
        return CellDir(self.path / "cells" / cell_name(repeat, fold), repeat, fold)

    def cell_at(self, index: int, k: int) -> CellDir:
        """Cell of flat index ``repeat * k + fold``."""
        return self.cell(*divmod(index, k))

    def claim(self, index: int) -> Path:
        return self.claims / f"c{index}.claim"

    def tensorboard(self, repeat: int, fold: int) -> Path:
        return self.path / "tensorboard" / cell_name(repeat, fold)

    def finished_cells(self) -> list[CellDir]:
        """Every cell directory holding a fold.json, by (repeat, fold)."""
        found = [(parse_cell_name(p.name), p) for p in (self.path / "cells").glob("r*_f*")]
        return sorted((CellDir(p, *key) for key, p in found if key and (p / "fold.json")
                       .is_file()), key=lambda c: (c.repeat, c.fold))

    # ----------------------------------------------------------------------- config.json

    def read_record(self) -> dict:
        """config.json whole: {"config": settings, "resolved": ..., "versions": ...}."""
        if not self.exists():
            raise RunError(f"{self.path}: no config.json; not a fer3d run directory")
        return read_json(self.config)

    def read_config(self) -> dict:
        """The campaign settings recorded in config.json."""
        return self.read_record().get("config", {})

    def publish_config(self, record: dict) -> bool:
        """Write config.json unless another process did first (True if this one did)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return publish_once(self.config, record)

    def write_config(self, record: dict) -> None:
        write_json(record, self.config)

    # ----------------------------------------------------------------------- folds.json

    def read_plan(self) -> FoldPlan:
        return plan_from_dict(read_json(self.folds), os.fspath(self.folds))

    def publish_plan(self, plan: dict) -> FoldPlan:
        """Write folds.json unless another process did first; the plan everyone uses."""
        self.path.mkdir(parents=True, exist_ok=True)
        publish_once(self.folds, plan)
        return self.read_plan()

    def write_plan(self, plan: dict) -> None:
        write_json(plan, self.folds)

    # ----------------------------------------------------------------------- summary

    def read_summary(self) -> dict:
        return read_json(self.summary)

    def write_summary(self, summary: dict, *, partial: bool = False) -> Path:
        path = self.partial_summary if partial else self.summary
        write_json(summary, path)
        return path


def find_weights(path: str | os.PathLike) -> Path:
    """A weights file: ``path`` itself, a cell directory's, or a run directory's first
    finished cell's (weights.pt, then the resume checkpoint, then safetensors)."""
    path = Path(path)
    if path.is_file():
        return path
    run = RunDir(path)
    cells = [path] + [c.path for c in run.finished_cells()[:1]] + [run.cell(0, 0).path]
    for cell in cells:
        for name in WEIGHT_NAMES:
            if (cell / name).is_file():
                return cell / name
    raise RunError(f"{path}: no weights here (looked for {', '.join(WEIGHT_NAMES)} in it "
                   "and in its first finished cell); a cell kept with --keep none has none")
