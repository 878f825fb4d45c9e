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
    other collection); all shards must agree. Others unchanged."""
    if preset != "auto":
        return preset
    found = sorted(set(index.datasets))
    chosen = {next((name for name, rule in PRESETS.items() if d in rule.datasets),
                   AUTO_FALLBACK) for d in found}
    if len(chosen) != 1:
        raise ConfigError(f"--preset auto: the shards' dataset attributes are {found}; "
                          f"pass --preset {' or '.join(PRESETS)}")
    return chosen.pop()


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


def eligible_subjects(index: ShardIndex, preset: str,
                      classes: Sequence[str] | None = None) -> list[str]:
    """Subjects the preset may choose, sorted: with ``complete``, those having a sample of
    every (class, intensity) it requires; else every subject with an eligible sample."""
    rule = preset_rule(preset)
    names = plan_classes(index, preset, classes)
    rows = eligible_rows(index, preset, names)
    if not rule.complete:
        return sorted({str(s) for s in index.subject[rows]})
    label = relabel(index, names).label
    need = len(names) * (len(rule.intensities) if rule.intensities else 1)
    keys: dict[str, set] = {}
    for r in rows:
        keys.setdefault(str(index.subject[r]), set()).add((int(label[r]),
                                                           int(index.intensity[r])))
    return sorted(s for s, k in keys.items() if len(k) >= need)


def select_subjects(index: ShardIndex, preset: str, n_subjects: int = 60, seed: int = 0,
                    classes: Sequence[str] | None = None) -> list[str]:
    """The preset's subjects, sorted by name: ``n_subjects`` complete ones drawn with
    ``seed`` (all, and the log says so, when there are fewer), or every eligible one."""
    if n_subjects < 1:
        raise PlanError(f"n_subjects must be >= 1, got {n_subjects}")
    pool = eligible_subjects(index, preset, classes)
    if not pool:
        raise PlanError(f"no subject has every sample preset {preset!r} requires (classes "
                        f"{list(plan_classes(index, preset, classes))})")
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


def check_sequences(index: ShardIndex, rows: np.ndarray) -> None:
    """PlanError unless every sequence of ``rows`` belongs to one subject (folds split
    subjects, so they must never split a sequence)."""
    seq, subj = index.sequence[rows], index.subject[rows]
    owners: dict[str, str] = {}
    for s, who in zip(seq[seq != ""], subj[seq != ""]):
        if owners.setdefault(str(s), str(who)) != who:
            raise PlanError(f"sequence {str(s)!r} spans subjects {owners[str(s)]!r} and "
                            f"{str(who)!r} in {', '.join(index.paths)}: a fold would split it")


# --------------------------------------------------------------------------- folds

def _check_k(subjects: Sequence[str], k: int) -> None:
    if k < 2:
        raise PlanError(f"k-fold needs k >= 2, got {k}")
    if len(subjects) < k:
        raise PlanError(f"{k}-fold cross-validation needs at least {k} subjects; "
                        f"the selection has {len(subjects)}: lower --folds or add subjects")
    if len(set(subjects)) != len(subjects):
        raise PlanError("subjects must be unique")


def subject_folds(subjects: list[str], k: int = 10, repeats: int = 1,
                  seed: int = 0) -> list[list[list[str]]]:
    """Per repeat, ``k`` disjoint subject lists covering ``subjects`` (sizes differ by <= 1).

    Repeat r is drawn from (seed, r) alone, so asking for more repeats later extends a plan
    without changing the repeats already run.
    """
    _check_k(subjects, k)
    base = sorted(subjects)
    plan = []
    for r in range(repeats):
        perm = np.random.default_rng([seed, r]).permutation(len(base))
        plan.append([sorted(base[i] for i in part) for part in np.array_split(perm, k)])
    return plan


def stratified_subject_folds(subjects: list[str], counts: np.ndarray, k: int = 10,
                             repeats: int = 1, seed: int = 0) -> list[list[list[str]]]:
    """Per repeat, ``k`` disjoint subject lists whose label mix follows the selection's.

    ``counts`` (n_subjects, n_classes): each subject's samples per class, rows in the
    order of ``subjects``. Greedy, as scikit-learn's StratifiedGroupKFold: the subjects in
    an order drawn from (seed, r), stable-sorted so that those of the most uneven label mix
    come first, each go to the fold where the per-class shares then spread least (ties: the
    fold with fewest samples). No fold stays empty: while one is, it is where any subject
    spreads every class's shares least. Repeat r depends on (seed, r) alone, as in
    :func:`subject_folds`.
    """
    _check_k(subjects, k)
    counts = np.asarray(counts, dtype=np.float64)
    total = np.maximum(counts.sum(axis=0), 1.0)
    plan = []
    for r in range(repeats):
        order = np.random.default_rng([seed, r]).permutation(len(subjects))
        order = order[np.argsort(-counts[order].std(axis=1), kind="stable")]
        fold_counts = np.zeros((k, counts.shape[1]))
        members: list[list[str]] = [[] for _ in range(k)]
        for i in order:
            trial = fold_counts[None] + np.eye(k)[:, :, None] * counts[i][None, None]
            spread = (trial / total).std(axis=1).mean(axis=1)      # one value per fold
            best = min(range(k), key=lambda f: (round(spread[f], 12), fold_counts[f].sum()))
            fold_counts[best] += counts[i]
            members[best].append(subjects[i])
        plan.append([sorted(m) for m in members])
    return plan


@dataclass
class FoldPlan:
    """Everything that fixes who trains and who tests; serialised as folds.json.

    class_names   the classes in code order: the model's outputs.
    val_subjects  how many training subjects each cell holds out for validation (0: none,
                  the paper's fixed schedule).
    stratify      the folds balance the labels (:func:`stratified_subject_folds`).
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


def validation_subjects(train_subjects: list[str], n: int, seed: int, repeat: int,
                        fold: int) -> list[str]:
    """``n`` of the training subjects, drawn from (seed, repeat, fold); [] when n = 0."""
    if n <= 0:
        return []
    if n >= len(train_subjects):
        raise PlanError(f"cannot hold out {n} validation subjects from "
                        f"{len(train_subjects)} training subjects")
    pick = np.random.default_rng([seed, repeat, fold, 1]).choice(len(train_subjects), n,
                                                                 replace=False)
    return sorted(train_subjects[i] for i in pick)


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


def make_plan(index: ShardIndex, preset: str, *, classes: Sequence[str] | None = None,
              n_subjects: int = 60, k: int = 10, repeats: int = 1, seed: int = 0,
              val_subjects: int = 0) -> FoldPlan:
    """Choose the classes, subjects and samples, then split them into ``repeats`` x ``k``
    folds; PlanError naming a class without any selected sample."""
    names = plan_classes(index, preset, classes)
    subjects = select_subjects(index, preset, n_subjects, seed, names)
    rows = select_samples(index, preset, subjects, names)
    check_sequences(index, rows)
    shown = set(relabel(index, names).label[rows].tolist())
    empty = [n for c, n in enumerate(names) if c not in shown]
    if empty:
        raise PlanError(f"classes {empty} have no sample in the selection from "
                        f"{', '.join(index.paths)}")
    plan = FoldPlan(preset=preset, seed=seed, k=k, subjects=subjects,
                    sample_ids=[str(s) for s in index.sample_id[rows]], folds=[],
                    class_names=list(names), val_subjects=val_subjects,
                    stratify=preset_rule(preset).stratify)
    plan.folds = draw_folds(plan, index, repeats)
    # Validate the carve-out now, not in the middle of a campaign.
    validation_subjects(sorted(set(subjects) - set(plan.folds[0][0])), val_subjects, seed, 0, 0)
    return plan


def extend_plan(plan: FoldPlan, repeats: int, index: ShardIndex) -> FoldPlan:
    """The same plan with at least ``repeats`` repeats (earlier repeats unchanged)."""
    if repeats > plan.repeats:
        plan.folds = draw_folds(plan, index, repeats)
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
