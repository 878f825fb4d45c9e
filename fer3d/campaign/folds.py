"""Subject-independent k-fold splits: plain, and stratified by label.

Stage: a selection's subjects (and their per-class sample counts) -> per repeat, k disjoint
subject lists. Pure functions of their arguments and a seed; repeat r is drawn from
(seed, r) alone, so asking for more repeats later extends a plan without changing the
repeats already run. Also: the validation subjects a cell holds out, a final model's
folds (no test subject), and the check that a sequence stays with one subject (folds split
subjects). :mod:`fer3d.campaign.protocol` decides which subjects and samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fer3d.errors import PlanError
from fer3d_data.shard_index import ShardIndex


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


def final_folds(seeds: int) -> list[list[list[str]]]:
    """One fold per seed, no test subject: every selected subject trains every member."""
    return [[[]] for _ in range(seeds)]


def check_sequences(index: ShardIndex, rows: np.ndarray) -> None:
    """PlanError unless every sequence of ``rows`` belongs to one subject (folds split
    subjects, so they must never split a sequence)."""
    seq, subj = index.sequence[rows], index.subject[rows]
    owners: dict[str, str] = {}
    for s, who in zip(seq[seq != ""], subj[seq != ""]):
        if owners.setdefault(str(s), str(who)) != who:
            raise PlanError(f"sequence {str(s)!r} spans subjects {owners[str(s)]!r} and "
                            f"{str(who)!r} in {', '.join(index.paths)}: a fold would split it")
