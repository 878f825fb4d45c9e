"""The evaluation protocol: presets, class names, subject selection and repeated
subject-independent k-fold.

Stage: shard index -> which samples train and test in each (repeat, fold) cell, and under
which class names. Pure functions of the index and a seed (torch-free, no files): the run
directory (:mod:`fer3d.campaign.rundir`) saves the plan as ``folds.json`` and reuses it, so
a resumed or re-evaluated campaign sees exactly the same classes, subjects and splits.

Labels are data: a shard names its labels (``ShardIndex.class_names``); a campaign trains
the classes its preset or ``--classes`` asks for, in that order, and :func:`relabel` turns
the shard's codes into the campaign's. Every selection rule is a row of :data:`PRESETS`
(the only place a dataset is named). docs/protocol.md states the rules.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fer3d.campaign.folds import (
    check_sequences,
    final_folds,
    stratified_subject_folds,
    subject_folds,
    validation_subjects,
)
from fer3d.errors import ConfigError, PlanError
from fer3d_data.schema import EXPRESSIONS
from fer3d_data.shard_index import ShardIndex

log = logging.getLogger(__name__)

# 2: class_names (the classes in code order) and stratify
FOLDS_VERSION = 2


@dataclass(frozen=True)
class Preset:
    """A sample-selection rule, as data.

    datasets     the shards' ``dataset`` attributes that ``--preset auto`` picks it for
    classes      class names in code order (``--classes`` overrides); None: every label of
                 the shards that has a sample, in the shards' order
    intensities  intensities kept; None: any
    one_per_class  one scan per (subject, class): the one whose sample id sorts first
    complete     only subjects with a sample of every (class, intensity), of which
                 ``--subjects`` are drawn with ``--seed``; False: every subject with a sample
    stratify     folds balance the labels (subject-independent, stratified where it can be)
    """

    datasets: tuple[str, ...] = ()
    classes: tuple[str, ...] | None = None
    intensities: tuple[int, ...] | None = None
    one_per_class: bool = False
    complete: bool = False
    stratify: bool = False


# The paper's selections (Sui et al., 2022) and every labelled sample of any collection.
PRESETS = {
    "bu3dfe": Preset(datasets=("bu3dfe",), classes=EXPRESSIONS, intensities=(3, 4),
                     complete=True),
    "bosphorus": Preset(datasets=("bosphorus",), classes=EXPRESSIONS, one_per_class=True,
                        complete=True),
    "labels": Preset(stratify=True),
}
AUTO_FALLBACK = "labels"  # --preset auto for shards of a dataset no preset names


def preset_rule(preset: str) -> Preset:
    if preset not in PRESETS:
        raise PlanError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def resolve_preset(preset: str, index: ShardIndex) -> str:
    """auto -> the preset naming the shards' ``dataset`` attribute (``labels`` for any
    other collection); all shards must agree. A dataset's preset on shards of another
    dataset that a preset names (``--preset bosphorus`` on BU-3DFE, which would train on its
    intensity-1 scans) is refused, naming the preset that fits."""
    found = sorted(set(index.datasets))
    fits = {d: next((name for name, rule in PRESETS.items() if d in rule.datasets),
                    AUTO_FALLBACK) for d in found}
    if preset == "auto":
        if len(set(fits.values())) != 1:
            raise ConfigError(f"--preset auto: the shards' dataset attributes are {found}; "
                              f"pass --preset {' or '.join(PRESETS)}")
        return next(iter(fits.values()))
    rule = preset_rule(preset)
    other = [d for d in found if rule.datasets and d not in rule.datasets
             and fits[d] != AUTO_FALLBACK]
    if other:
        raise ConfigError(f"--preset {preset}: {', '.join(index.paths)}: {other[0]} scans "
                          f"(the shards' dataset attribute), and preset {preset} selects "
                          f"{preset}'s samples: use --preset {fits[other[0]]} (or auto)")
    return preset


# --------------------------------------------------------------------------- classes

def _present(index: ShardIndex) -> tuple[str, ...]:
    return tuple(n for c, n in enumerate(index.class_names) if (index.label == c).any())


def plan_classes(index: ShardIndex, preset: str,
                 classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class names a campaign trains, in code order: ``classes`` (``--classes``), else
    the preset's, else every label of the shards that has a sample. PlanError naming a
    class the shards do not have, a repeated one, or fewer than two."""
    rule = preset_rule(preset)
    names = tuple(classes) if classes else rule.classes or _present(index)
    where = "--classes" if classes else f"preset {preset}"
    unknown = [n for n in names if n not in index.class_names]
    if unknown:
        raise PlanError(f"{where}: {unknown} are not labels of the shards "
                        f"{', '.join(index.paths)} (their labels: {list(index.class_names)})")
    if len(set(names)) != len(names):
        raise PlanError(f"{where}: a class is named twice in {list(names)}")
    if len(names) < 2:
        raise PlanError(f"{where}: a classifier needs at least 2 classes, got {list(names)}")
    return names


def relabel(index: ShardIndex, class_names: Sequence[str]) -> ShardIndex:
    """``index`` with its labels as codes into ``class_names`` (-1: a label outside them)."""
    names = list(class_names)
    lookup = np.array([names.index(n) if n in names else -1 for n in index.class_names],
                      dtype=np.int64)
    return dataclasses.replace(index, label=lookup[index.label], class_names=tuple(names))


# --------------------------------------------------------------------------- samples

def eligible_rows(index: ShardIndex, preset: str,
                  classes: Sequence[str] | None = None) -> np.ndarray:
    """Rows of ``index`` the preset could use, before choosing subjects: its classes
    (:func:`plan_classes`), its intensities, one scan per (subject, class) where it says so.
    """
    rule = preset_rule(preset)
    index = relabel(index, plan_classes(index, preset, classes))
    keep = index.label >= 0
    if rule.intensities is not None:
        keep &= np.isin(index.intensity, rule.intensities)
    rows = np.flatnonzero(keep)
    return _first_per_class(index, rows) if rule.one_per_class else rows


def _first_per_class(index: ShardIndex, rows: np.ndarray) -> np.ndarray:
    label = index.label
    order = rows[np.lexsort((index.sample_id[rows], label[rows], index.subject[rows]))]
    seen, keep = set(), []
    for r in order:
        key = (index.subject[r], int(label[r]))
        if key not in seen:
            seen.add(key)
            keep.append(r)
    return np.sort(np.array(keep, dtype=np.int64))


def _needed(rule: Preset, n_classes: int) -> set[tuple[int, ...]]:
    """The (class[, intensity]) keys every subject of a ``complete`` preset must have."""
    if rule.intensities:
        return {(c, i) for c in range(n_classes) for i in rule.intensities}
    return {(c,) for c in range(n_classes)}


def _subject_keys(index: ShardIndex, preset: str, names: Sequence[str]) -> dict[str, set]:
    """Every subject of the shards -> the keys of :func:`_needed` it has."""
    rule, label = preset_rule(preset), relabel(index, names).label
    have: dict[str, set] = {str(s): set() for s in index.subject}
    for r in eligible_rows(index, preset, names):
        key = (int(label[r]),) + ((int(index.intensity[r]),) if rule.intensities else ())
        have[str(index.subject[r])].add(key)
    return have


def eligible_subjects(index: ShardIndex, preset: str,
                      classes: Sequence[str] | None = None) -> list[str]:
    """Subjects the preset may choose, sorted: with ``complete``, those having a sample of
    every (class, intensity) it requires; else every subject with an eligible sample."""
    rule, names = preset_rule(preset), plan_classes(index, preset, classes)
    if not rule.complete:
        return sorted({str(s) for s in index.subject[eligible_rows(index, preset, names)]})
    need = _needed(rule, len(names))
    return sorted(s for s, keys in _subject_keys(index, preset, names).items() if need <= keys)


def lacking_samples(index: ShardIndex, preset: str,
                    classes: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Subjects a ``complete`` preset leaves out -> what each lacks ("disgust 4" or
    "disgust"); empty for a preset that takes every subject with a sample."""
    rule, names = preset_rule(preset), plan_classes(index, preset, classes)
    if not rule.complete:
        return {}
    need = _needed(rule, len(names))
    return {s: [" ".join([names[k[0]], *map(str, k[1:])]) for k in sorted(need - keys)]
            for s, keys in sorted(_subject_keys(index, preset, names).items())
            if not need <= keys}


def _listed(lacking: dict[str, list[str]], limit: int = 10) -> str:
    shown = [f"{s} (no {', '.join(m[:4])}{', ...' if len(m) > 4 else ''})"
             for s, m in list(lacking.items())[:limit]]
    return ", ".join(shown) + (f" and {len(lacking) - limit} more" if len(lacking) > limit
                               else "")


def _wanted(rule: Preset, names: Sequence[str]) -> str:
    """``all six expressions at intensities 3 and 4`` or ``all 4 classes (a, b, c, d)``."""
    what = ("all six expressions" if tuple(names) == tuple(EXPRESSIONS)
            else f"all {len(names)} classes ({', '.join(names)})")
    levels = " and ".join(map(str, rule.intensities or ()))
    return what + (f" at intensities {levels}" if levels else "")


def _likely_cause(index: ShardIndex, preset: str, names: Sequence[str]) -> str:
    """Why no subject of the shards has the preset's full set of samples."""
    rule, datasets = preset_rule(preset), sorted(set(index.datasets))
    if rule.datasets and not set(datasets) & set(rule.datasets):
        return (f"the shards' dataset is {', '.join(map(repr, datasets))}, and preset "
                f"{preset!r} selects {preset}'s expressions and intensities")
    label = relabel(index, names).label
    present = set(label[label >= 0].tolist())
    missing = [n for c, n in enumerate(names) if c not in present]
    if missing:
        return f"no scan of {', '.join(missing)}: shards prepared with --expressions?"
    levels = set(index.intensity[label >= 0].tolist())
    if rule.intensities and not set(rule.intensities) <= levels:
        return (f"scans only at intensities {sorted(levels)}: shards prepared with "
                f"--intensities? (the preset uses {' and '.join(map(str, rule.intensities))})")
    return ("every subject lacks some class: a --shard I/N part rather than the merged "
            "shard, or failed scans (fer3d-prep inspect SHARD --errors)")


def select_subjects(index: ShardIndex, preset: str, n_subjects: int = 60, seed: int = 0,
                    classes: Sequence[str] | None = None) -> list[str]:
    """The preset's subjects, sorted by name: ``n_subjects`` complete ones drawn with
    ``seed`` (all, and the log says so, when there are fewer), or every eligible one."""
    if n_subjects < 1:
        raise PlanError(f"n_subjects must be >= 1, got {n_subjects}")
    pool = eligible_subjects(index, preset, classes)
    names = plan_classes(index, preset, classes)
    lacking = lacking_samples(index, preset, names)
    if not pool:
        raise PlanError(f"no subject of the shards ({len(set(index.subject.tolist()))}) has "
                        f"{_wanted(preset_rule(preset), names)} that preset {preset!r} needs; "
                        f"likely cause: {_likely_cause(index, preset, names)}")
    if lacking:
        log.warning("preset %s: %d subject(s) left out, lacking samples it needs: %s", preset,
                    len(lacking), _listed(lacking))
    if not preset_rule(preset).complete or len(pool) == n_subjects:
        return pool
    if len(pool) < n_subjects:
        log.warning("preset %s: only %d subjects have every sample it requires; "
                    "using all of them instead of %d", preset, len(pool), n_subjects)
        return pool
    chosen = np.random.default_rng(seed).choice(len(pool), size=n_subjects, replace=False)
    return sorted(pool[i] for i in chosen)


def select_samples(index: ShardIndex, preset: str, subjects: list[str],
                   classes: Sequence[str] | None = None) -> np.ndarray:
    """Rows of the preset's samples of ``subjects``, ascending."""
    rows = eligible_rows(index, preset, classes)
    return rows[np.isin(index.subject[rows], subjects)]


# --------------------------------------------------------------------------- plans

@dataclass
class FoldPlan:
    """Everything that fixes who trains and who tests; serialised as folds.json.

    class_names   the classes in code order: the model's outputs.
    val_subjects  how many training subjects each cell holds out for validation (0: none,
                  the paper's fixed schedule).
    stratify      the folds balance the labels (:func:`stratified_subject_folds`).

    A final model's plan (:func:`make_final_plan`) has ``k`` 1: each "repeat" is one
    member trained on every subject, its one fold's test list empty.
    """

    preset: str
    seed: int
    k: int
    subjects: list[str]
    sample_ids: list[str]
    folds: list[list[list[str]]]
    class_names: list[str]
    val_subjects: int = 0
    stratify: bool = False
    version: int = FOLDS_VERSION
    shards: list[str] = field(default_factory=list)

    @property
    def repeats(self) -> int:
        return len(self.folds)

    @property
    def final(self) -> bool:
        return self.k == 1

    def cell(self, index: ShardIndex, repeat: int, fold: int) -> dict[str, np.ndarray]:
        """Index rows of ``train`` / ``val`` / ``test`` for one (repeat, fold)."""
        rows = index.rows_of(self.sample_ids)
        subj = index.subject[rows]
        test_subjects = self.folds[repeat][fold]
        train_subjects = sorted(s for s in self.subjects if s not in set(test_subjects))
        val = validation_subjects(train_subjects, self.val_subjects, self.seed, repeat, fold)
        return {
            "train": rows[np.isin(subj, train_subjects) & ~np.isin(subj, val)],
            "val": rows[np.isin(subj, val)],
            "test": rows[np.isin(subj, test_subjects)],
        }


def draw_folds(plan: FoldPlan, index: ShardIndex, repeats: int) -> list[list[list[str]]]:
    """The plan's first ``repeats`` fold splits (stratified by the plan's labels or not)."""
    if not plan.stratify:
        return subject_folds(plan.subjects, plan.k, repeats, plan.seed)
    rows = index.rows_of(plan.sample_ids)
    label = relabel(index, plan.class_names).label[rows]
    where = {s: i for i, s in enumerate(plan.subjects)}
    counts = np.zeros((len(plan.subjects), len(plan.class_names)), np.int64)
    np.add.at(counts, ([where[str(s)] for s in index.subject[rows]], label), 1)
    return stratified_subject_folds(plan.subjects, counts, plan.k, repeats, plan.seed)


def _selection(index: ShardIndex, preset: str, classes: Sequence[str] | None,
               n_subjects: int, seed: int) -> tuple[tuple[str, ...], list[str], np.ndarray]:
    """(class names, subjects, rows) of a campaign; PlanError naming a class without any
    selected sample."""
    names = plan_classes(index, preset, classes)
    subjects = select_subjects(index, preset, n_subjects, seed, names)
    rows = select_samples(index, preset, subjects, names)
    check_sequences(index, rows)
    shown = set(relabel(index, names).label[rows].tolist())
    empty = [n for c, n in enumerate(names) if c not in shown]
    if empty:
        raise PlanError(f"classes {empty} have no sample in the selection from "
                        f"{', '.join(index.paths)}")
    return names, subjects, rows


def make_plan(index: ShardIndex, preset: str, *, classes: Sequence[str] | None = None,
              n_subjects: int = 60, k: int = 10, repeats: int = 1, seed: int = 0,
              val_subjects: int = 0) -> FoldPlan:
    """Choose the classes, subjects and samples, then split them into ``repeats`` x ``k``
    folds."""
    names, subjects, rows = _selection(index, preset, classes, n_subjects, seed)
    plan = FoldPlan(preset=preset, seed=seed, k=k, subjects=subjects,
                    sample_ids=[str(s) for s in index.sample_id[rows]], folds=[],
                    class_names=list(names), val_subjects=val_subjects,
                    stratify=preset_rule(preset).stratify)
    plan.folds = draw_folds(plan, index, repeats)
    # Validate the carve-out now, not in the middle of a campaign.
    validation_subjects(sorted(set(subjects) - set(plan.folds[0][0])), val_subjects, seed, 0, 0)
    return plan


def make_final_plan(index: ShardIndex, preset: str, *, classes: Sequence[str] | None = None,
                    n_subjects: int = 60, seeds: int = 1, seed: int = 0,
                    val_subjects: int = 0) -> FoldPlan:
    """The classes, subjects and samples :func:`make_plan` would select, all of them
    training each of ``seeds`` members (a final model)."""
    names, subjects, rows = _selection(index, preset, classes, n_subjects, seed)
    validation_subjects(subjects, val_subjects, seed, 0, 0)
    return FoldPlan(preset=preset, seed=seed, k=1, subjects=subjects,
                    sample_ids=[str(s) for s in index.sample_id[rows]],
                    folds=final_folds(seeds), class_names=list(names),
                    val_subjects=val_subjects)


def extend_plan(plan: FoldPlan, repeats: int, index: ShardIndex) -> FoldPlan:
    """The same plan with at least ``repeats`` repeats (earlier repeats unchanged)."""
    if repeats > plan.repeats:
        plan.folds = final_folds(repeats) if plan.final else draw_folds(plan, index, repeats)
    return plan


def plan_from_dict(data: dict, where: str) -> FoldPlan:
    """A FoldPlan from its folds.json mapping; PlanError naming ``where`` for another
    version. Version 1 plans (before labels were data) trained the six expressions."""
    found = data.get("version") if isinstance(data, dict) else None
    if found == 1:
        data = {**data, "version": FOLDS_VERSION, "class_names": list(EXPRESSIONS)}
    elif found != FOLDS_VERSION:
        raise PlanError(f"{where}: folds.json version {found!r}, expected {FOLDS_VERSION}")
    return FoldPlan(**data)
