"""The evaluation protocol: subject selection and repeated subject-independent k-fold.

Stage: shard index -> which samples train and test in each (repeat, fold) cell. Pure
functions of the index and a seed (torch-free, no files): the run directory
(:mod:`fer3d.campaign.rundir`) saves the plan as ``folds.json`` and reuses it, so a resumed
or re-evaluated campaign sees exactly the same subjects and splits. docs/protocol.md
states the rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from fer3d.errors import ConfigError, PlanError
from fer3d_data.schema import EXPRESSIONS
from fer3d_data.shard_index import ShardIndex

log = logging.getLogger(__name__)

PRESETS = ("bu3dfe", "bosphorus")
SIX = tuple(range(6))          # codes of the six basic expressions (neutral = 6 is out)
BU3DFE_INTENSITIES = (3, 4)    # the two highest intensities
FOLDS_VERSION = 1


def eligible_rows(index: ShardIndex, preset: str) -> np.ndarray:
    """Rows of ``index`` the preset could use, before choosing subjects.

    bu3dfe: six expressions at intensities 3 and 4. bosphorus: six emotions, one scan per
    (subject, emotion): the one whose sample id sorts first.
    """
    if preset not in PRESETS:
        raise PlanError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    expr, inten = index.expression, index.intensity
    six = np.isin(expr, SIX)
    if preset == "bu3dfe":
        return np.flatnonzero(six & np.isin(inten, BU3DFE_INTENSITIES))
    rows = np.flatnonzero(six)
    order = rows[np.lexsort((index.sample_id[rows], expr[rows], index.subject[rows]))]
    seen, keep = set(), []
    for r in order:
        key = (index.subject[r], int(expr[r]))
        if key not in seen:
            seen.add(key)
            keep.append(r)
    return np.sort(np.array(keep, dtype=np.int64))


def _needed(preset: str) -> set[tuple[int, ...]]:
    """The (expression, intensity) keys (bosphorus: expression) every subject must have."""
    if preset == "bu3dfe":
        return {(e, i) for e in SIX for i in BU3DFE_INTENSITIES}
    return {(e,) for e in SIX}


def _subject_keys(index: ShardIndex, preset: str) -> dict[str, set]:
    """Every subject of the shards -> the keys of :func:`_needed` it has."""
    have: dict[str, set] = {str(s): set() for s in index.subject}
    for r in eligible_rows(index, preset):
        key = (int(index.expression[r]),) + ((int(index.intensity[r]),)
                                            if preset == "bu3dfe" else ())
        have[str(index.subject[r])].add(key)
    return have


def complete_subjects(index: ShardIndex, preset: str) -> list[str]:
    """Subjects having every required (expression[, intensity]) sample, sorted."""
    need = _needed(preset)
    return sorted(s for s, keys in _subject_keys(index, preset).items() if need <= keys)


def lacking_samples(index: ShardIndex, preset: str) -> dict[str, list[str]]:
    """Subjects the preset leaves out -> what each lacks ("disgust 4" or "disgust")."""
    need = _needed(preset)
    return {s: [" ".join([EXPRESSIONS[k[0]], *map(str, k[1:])]) for k in sorted(need - keys)]
            for s, keys in sorted(_subject_keys(index, preset).items()) if not need <= keys}


def _listed(lacking: dict[str, list[str]], limit: int = 10) -> str:
    shown = [f"{s} (no {', '.join(m[:4])}{', ...' if len(m) > 4 else ''})"
             for s, m in list(lacking.items())[:limit]]
    return ", ".join(shown) + (f" and {len(lacking) - limit} more" if len(lacking) > limit
                               else "")


def _likely_cause(index: ShardIndex, preset: str) -> str:
    """Why no subject of the shards has the preset's full set of samples."""
    datasets = sorted(set(index.datasets))
    if preset not in datasets:
        return (f"the shards' dataset is {', '.join(map(repr, datasets))}, and preset "
                f"{preset!r} selects {preset}'s expressions and intensities")
    shown = np.isin(index.expression, SIX)
    missing = [EXPRESSIONS[e] for e in SIX if e not in set(index.expression[shown].tolist())]
    if missing:
        return f"no scan of {', '.join(missing)}: shards prepared with --expressions?"
    levels = set(index.intensity[shown].tolist())
    if preset == "bu3dfe" and not set(BU3DFE_INTENSITIES) <= levels:
        return (f"scans only at intensities {sorted(levels)}: shards prepared with "
                "--intensities? (the protocol uses 3 and 4)")
    return ("every subject lacks some expression: a --shard I/N part rather than the merged "
            "shard, or failed scans (fer3d-prep inspect SHARD --errors)")


def select_subjects(index: ShardIndex, preset: str, n_subjects: int = 60,
                    seed: int = 0) -> list[str]:
    """``n_subjects`` complete subjects drawn with ``seed``, sorted by name.

    With fewer complete subjects than asked (small or synthetic data) all are used and the
    log says so.
    """
    if n_subjects < 1:
        raise PlanError(f"n_subjects must be >= 1, got {n_subjects}")
    pool = complete_subjects(index, preset)
    lacking = lacking_samples(index, preset)
    if not pool:
        what = " at intensities 3 and 4" if preset == "bu3dfe" else ""
        raise PlanError(f"no subject of the shards ({len(lacking)}) has all six expressions"
                        f"{what} that preset {preset!r} needs; likely cause: "
                        f"{_likely_cause(index, preset)}")
    if lacking:
        log.warning("preset %s: %d subject(s) left out, lacking samples it needs: %s", preset,
                    len(lacking), _listed(lacking))
    if len(pool) <= n_subjects:
        if len(pool) < n_subjects:
            log.warning("preset %s: only %d subjects have the full expression set; "
                        "using all of them instead of %d", preset, len(pool), n_subjects)
        return pool
    chosen = np.random.default_rng(seed).choice(len(pool), size=n_subjects, replace=False)
    return sorted(pool[i] for i in chosen)


def select_samples(index: ShardIndex, preset: str, subjects: list[str]) -> np.ndarray:
    """Rows of the preset's samples of ``subjects``, ascending."""
    rows = eligible_rows(index, preset)
    return rows[np.isin(index.subject[rows], subjects)]


def subject_folds(subjects: list[str], k: int = 10, repeats: int = 1,
                  seed: int = 0) -> list[list[list[str]]]:
    """Per repeat, ``k`` disjoint subject lists covering ``subjects`` (sizes differ by <= 1).

    Repeat r is drawn from (seed, r) alone, so asking for more repeats later extends a plan
    without changing the repeats already run.
    """
    if k < 2:
        raise PlanError(f"k-fold needs k >= 2, got {k}")
    if len(subjects) < k:
        raise PlanError(f"{k}-fold cross-validation needs at least {k} subjects; "
                         f"the selection has {len(subjects)}: lower --folds or add subjects")
    if len(set(subjects)) != len(subjects):
        raise PlanError("subjects must be unique")
    base = sorted(subjects)
    plan = []
    for r in range(repeats):
        perm = np.random.default_rng([seed, r]).permutation(len(base))
        plan.append([sorted(base[i] for i in part) for part in np.array_split(perm, k)])
    return plan


@dataclass
class FoldPlan:
    """Everything that fixes who trains and who tests; serialised as folds.json.

    val_subjects  how many training subjects each cell holds out for validation (0: none,
                  the paper's fixed schedule).
    """

    preset: str
    seed: int
    k: int
    subjects: list[str]
    sample_ids: list[str]
    folds: list[list[list[str]]]
    val_subjects: int = 0
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


def make_plan(index: ShardIndex, preset: str, *, n_subjects: int = 60, k: int = 10,
              repeats: int = 1, seed: int = 0, val_subjects: int = 0) -> FoldPlan:
    """Select subjects and samples, then split them into ``repeats`` x ``k`` folds."""
    subjects = select_subjects(index, preset, n_subjects, seed)
    rows = select_samples(index, preset, subjects)
    folds = subject_folds(subjects, k, repeats, seed)
    plan = FoldPlan(preset=preset, seed=seed, k=k, subjects=subjects,
                    sample_ids=[str(s) for s in index.sample_id[rows]], folds=folds,
                    val_subjects=val_subjects)
    # Validate the carve-out now, not in the middle of a campaign.
    validation_subjects(sorted(set(subjects) - set(folds[0][0])), val_subjects, seed, 0, 0)
    return plan


def extend_plan(plan: FoldPlan, repeats: int) -> FoldPlan:
    """The same plan with at least ``repeats`` repeats (earlier repeats unchanged)."""
    if repeats <= plan.repeats:
        return plan
    plan.folds = subject_folds(plan.subjects, plan.k, repeats, plan.seed)
    return plan


def plan_from_dict(data: dict, where: str) -> FoldPlan:
    """A FoldPlan from its folds.json mapping; PlanError naming ``where`` for another version."""
    if not isinstance(data, dict) or data.get("version") != FOLDS_VERSION:
        found = data.get("version") if isinstance(data, dict) else None
        raise PlanError(f"{where}: folds.json version {found!r}, expected {FOLDS_VERSION}")
    return FoldPlan(**data)


def resolve_preset(preset: str, index: ShardIndex) -> str:
    """auto -> the shards' ``dataset`` attribute (all shards must agree); a preset other
    than the dataset of the shards is refused, naming the one that fits."""
    found = sorted(set(index.datasets))
    if preset == "auto":
        if len(found) != 1 or found[0] not in PRESETS:
            raise ConfigError(f"--preset auto: the shards' dataset attributes are {found}; "
                              f"pass --preset {' or '.join(PRESETS)}")
        return found[0]
    other = [d for d in found if d in PRESETS and d != preset]
    if other:
        raise ConfigError(f"--preset {preset}: {', '.join(index.paths)}: {other[0]} scans "
                          f"(the shards' dataset attribute), and preset {preset} selects "
                          f"{preset}'s samples: use --preset {other[0]} (or auto)")
    return preset
