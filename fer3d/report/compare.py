"""Two finished runs compared cell by cell: do they share one plan, and is their difference
more than fold-to-fold noise?

Stage: runs -> a difference in accuracy points with its interval and p-value (torch-free).
Two runs are paired when their folds.json plans agree (read through
:class:`fer3d.campaign.rundir.RunDir` by :func:`fer3d.report.runs.load_run`): the same
dataset, subjects, samples, k and validation hold-out, and the same folds in every repeat
both ran. Their J fold-level differences then go to the corrected resampled t-test
(:func:`fer3d.report.stats.corrected_paired`); runs on other folds can only be compared
unpaired (:func:`fer3d.report.stats.corrected_unpaired`), and only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer3d.errors import PairingError
from fer3d.report.runs import Run
from fer3d.report.stats import Difference, corrected_paired, corrected_unpaired, format_p
from fer3d.report.text import format_accuracy


@dataclass(frozen=True)
class Comparison:
    """``a`` − ``b`` in accuracy points; ``pairing`` says why it is paired or not."""

    a: Run
    b: Run
    paired: bool
    pairing: str
    result: Difference


def plan_mismatch(a: Run, b: Run) -> str | None:
    """None when ``a`` and ``b`` share one plan; else what differs, in words."""
    pa, pb = a.plan, b.plan
    if pa is None or pb is None:
        return "a run without its plan"
    for what, x, y in (("datasets", pa.preset, pb.preset), ("k", pa.k, pb.k),
                       ("subjects", pa.subjects, pb.subjects),
                       ("samples", pa.sample_ids, pb.sample_ids),
                       ("validation subjects", pa.val_subjects, pb.val_subjects)):
        if x != y:
            shown = f"{x} vs {y}" if isinstance(x, (int, str)) else (
                f"{len(set(x) ^ set(y))} not in both")
            return f"different {what} ({shown})"
    if pa.val_subjects and pa.seed != pb.seed:  # validation subjects are drawn from the seed
        return f"different validation subjects (seed {pa.seed} vs {pb.seed})"
    for r in range(min(a.repeats, b.repeats)):
        if pa.folds[r] != pb.folds[r]:
            return f"repeat {r} has different folds (seed {pa.seed} vs {pb.seed})"
    return None


def fold_scores(run: Run) -> dict[tuple[int, int], float]:
    """Test accuracy (%) of every (repeat, fold) cell with test samples."""
    return {(c["repeat"], c["fold"]): 100 * float(c["accuracy"]) for c in run.cells
            if c["total"]}


def holdout_ratio(run: Run) -> float:
    """n_test / n_train of a cell, averaged over the run's cells (the correction's term):
    training = the plan's samples less the test fold and the validation subjects'."""
    n = len(run.plan.sample_ids)
    n_val = run.plan.val_subjects * n / max(len(run.plan.subjects), 1)
    tests = np.array([c["total"] for c in run.cells], dtype=np.float64)
    return float(tests.mean() / max(n - tests.mean() - n_val, 1.0))


def compare(a: Run, b: Run, *, unpaired: bool = False) -> Comparison:
    """``a`` − ``b``: paired over the cells both ran when they share one plan; otherwise
    PairingError, or with ``unpaired`` the corrected unpaired test, saying why."""
    why = plan_mismatch(a, b)
    sa, sb = fold_scores(a), fold_scores(b)
    if why is None:
        common = sorted(sa.keys() & sb.keys())
        repeats = min(a.repeats, b.repeats)
        result = corrected_paired([sa[c] - sb[c] for c in common],
                                  (holdout_ratio(a) + holdout_ratio(b)) / 2)
        return Comparison(a, b, True, f"paired: one plan (same subjects, same folds in each "
                          f"of the {repeats} repeat(s) compared), {len(common)} cells", result)
    if not unpaired:
        raise PairingError(f"{a.path} and {b.path} do not share one plan ({why}): a paired "
                           "test needs the same subjects and folds; --unpaired compares "
                           "them anyway, with less power")
    result = corrected_unpaired(list(sa.values()), list(sb.values()), holdout_ratio(a),
                                holdout_ratio(b))
    return Comparison(a, b, False, f"unpaired: {why}", result)


def _interval(r: Difference) -> str:
    return "no interval" if r.low is None else f"[{r.low:+.2f}, {r.high:+.2f}]"


def describe(c: Comparison) -> str:
    """What ``fer3d-report --compare`` prints: both runs, the pairing, the difference."""
    r = c.result
    lines = [f"{name}: {run.path}: {run.title}: {format_accuracy(*run.accuracy())}, "
             f"{run.repeats} × {run.folds} cells" for name, run in (("A", c.a), ("B", c.b))]
    test = ("corrected resampled t-test" if c.paired else
            "corrected unpaired (Welch) t-test")
    lines += [c.pairing,
              f"A − B: {r.mean:+.2f} points, 95 % interval {_interval(r)}, "
              f"p = {format_p(r.p)} ({test}, Nadeau and Bengio 2003"
              + (f"; t = {r.t:.3f}, {r.df:.3g} degrees of freedom)" if r.t is not None
                 else ")")]
    if r.note:
        lines.append(f"note: {r.note}")
    if c.paired and r.naive_p is not None:
        lines.append(f"a plain paired t-test would claim p = {format_p(r.naive_p)}: it "
                     "treats the folds as independent, which they are not "
                     "(docs/reproduce.md)")
    return "\n".join(lines)
