"""Reproducing the paper's tables and figures: every campaign a target needs, then the target.

Stage: shards -> campaigns -> tables and figures. For each dataset found in the shards and
each variant the target needs (:func:`fer3d.paper.catalog.target_variants`), one campaign in
``OUT/runs/<dataset>/<variant>`` with the recipe's settings and the caller's overrides. A
run there is resumed when its settings and shards are these (finished cells skipped,
unfinished ones continued from their checkpoint: a finished run costs nothing) and refused
otherwise (:func:`fer3d.campaign.plan.check_same`); it is never reused as it is. A campaign
that fails or is refused is recorded and the others go on; the target is then built from
what finished.
Layout and costs: docs/reproduce.md.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from fer3d.errors import ConfigError, Fer3dError, ReproduceError
from fer3d.paper.catalog import DATASETS, TARGETS, target_variants
from fer3d.paper.recipes import paper_differences, recipe_values
from fer3d.paper.targets import build_target
from fer3d.report import load_runs, write_report
from fer3d.settings import TrainConfig

log = logging.getLogger(__name__)

# What a reproduction's cells keep: the tables need only each cell's fold.json, and Fig. 6,
# fer3d-cam RUN and fer3d-eval RUN read the weights of cell r0 f0 alone. Every cell's
# weights of `all` (26 campaigns x 1,000 cells x 73 MB on average) would fill ~1.9 TB.
REPRODUCE_KEEP = "first"


@dataclass
class Outcome:
    """What a reproduction wrote and what it could not make."""

    files: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)


def shards_by_dataset(shards: list[str]) -> dict[str, list[str]]:
    """Group shard files by their ``dataset`` attribute (bu3dfe, bosphorus)."""
    groups: dict[str, list[str]] = {}
    for path in shards:
        try:
            with h5py.File(path, "r") as f:
                name = f.attrs.get("dataset", "")
        except (OSError, FileNotFoundError) as exc:
            raise Fer3dError(f"{path}: cannot open as an HDF5 shard ({exc})") from None
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name not in DATASETS:
            raise Fer3dError(f"{path}: dataset attribute {name!r}, expected one of "
                                 f"{', '.join(DATASETS)}")
        groups.setdefault(name, []).append(str(path))
    return groups


def campaign_values(recipe: str, dataset: str, overrides: dict) -> dict:
    """The recipe's values for ``dataset`` with every non-None override on top (``keep``
    defaults to :data:`REPRODUCE_KEEP`)."""
    values = {"keep": REPRODUCE_KEEP, **recipe_values(recipe, dataset)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if str(values.get("pretrained")).lower() == "none":
        values["pretrained"] = None
    return values


def train_config(values: dict, shards: list[str], out: Path, variant: str) -> TrainConfig:
    """The TrainConfig of one campaign (it attaches to the run in ``out`` when its settings
    are the run's, and is refused naming the difference otherwise); a setting the engine
    does not take is an error."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unused = sorted(k for k in values if k not in names)
    if unused:
        raise ConfigError(f"fer3d-train has no setting {unused}")
    kept = {k: v for k, v in values.items() if k in names and k != "variant"}
    return TrainConfig(shards=shards, out=str(out), variant=variant, **kept)


def check_pretrained(value) -> None:
    """Fail once, before any campaign, when ``--pretrained`` names weights that cannot be
    used (missing, not a resnet18 state dict: :func:`read_pretrained`'s one line)."""
    if value is not None:
        from fer3d.train.checkpoint import read_pretrained  # torch: only when weights are named

        read_pretrained(value)


def _size(n_bytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes / 1e3:.0f} kB"


def disk_estimate(variants: list[str], values: dict) -> str:
    """What ``--keep`` will keep of ``variants``' weights (fp32 parameters; a full resume
    checkpoint adds Adam's two moments), beside what ``--keep weights`` would keep."""
    import torch

    from fer3d.models import count_parameters, create_model

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        weights = sum(4 * count_parameters(create_model(v)) for v in variants)
    cells = int(values["repeats"]) * int(values["folds"])
    kept = {"weights": cells, "first": 1, "none": 0, "full": 4 * cells}[values["keep"]]
    return (f"--keep {values['keep']}: ≈ {_size(kept * weights)} of weights for "
            f"{len(variants)} campaign(s) of {cells} cells (--keep weights: ≈ "
            f"{_size(cells * weights)}; predictions and logs ≈ 50 kB per cell)")


def run_campaigns(target: str, shards: list[str], out: Path, *, recipe: str = "paper",
                  overrides: dict | None = None) -> Outcome:
    """Run every campaign ``target`` needs, per dataset: a run of the same settings is
    resumed (nothing to do when finished), one of other settings refused and recorded."""
    from fer3d.campaign.run import run_campaign  # torch: imported only when training
    from fer3d.train.runtime import resolved_precision

    outcome = Outcome()
    for dataset, files in shards_by_dataset(shards).items():
        values = campaign_values(recipe, dataset, overrides or {})
        check_pretrained(values.get("pretrained"))
        precision = resolved_precision(values.get("device", "auto"), values.get("amp", "auto"))
        for line in paper_differences(values, dataset, precision):
            log.info("%s: %s", dataset, line)
        log.info("%s: %s", dataset, disk_estimate(target_variants(target), values))
        for variant in target_variants(target):
            run_dir = out / "runs" / dataset / variant
            try:
                log.info("%s %s: campaign in %s", dataset, variant, run_dir)
                run_campaign(train_config(values, files, run_dir, variant))
                outcome.runs.append(run_dir)
            except Exception as exc:  # one campaign's failure must not stop the others
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    raise  # every later campaign would fail the same way
                outcome.failures.append(f"{dataset} {variant}: {type(exc).__name__}: {exc}")
                if isinstance(exc, Fer3dError):
                    log.error("%s %s: %s", dataset, variant, exc)
                else:
                    log.exception("%s %s failed", dataset, variant)
    return outcome


def reproduce(target: str, shards: list[str], out: str | Path, *, recipe: str = "paper",
              overrides: dict | None = None, cam_samples: int = 6) -> Outcome:
    """Campaigns, then the target's files under ``OUT/<target>/`` (``all``: every target
    and ``OUT/report/report.md``). Raises ReproduceError at the end if anything failed."""
    out = Path(out)
    targets = list(TARGETS) if target == "all" else [target]
    outcome = Outcome()
    if target_variants(target):
        if not shards:
            raise ConfigError(f"{target} needs training: give the shard file(s)")
        outcome = run_campaigns(target, shards, out, recipe=recipe, overrides=overrides)
    runs, unreadable = load_runs(outcome.runs)
    outcome.failures += unreadable
    size = (overrides or {}).get("image_size") or 224
    for name in targets:
        if name == "fig6":
            outcome.files += _fig6(runs, shards, out / "fig6", cam_samples, outcome.failures)
        else:
            outcome.files += build_target(name, runs, out / name, params_size=size)
    if target == "all":
        from fer3d.paper.params import measure_table4

        outcome.files.append(write_report(runs, out / "report", problems=outcome.failures,
                                          table4=measure_table4(size)))
    if outcome.failures:
        raise ReproduceError(f"{target}: {len(outcome.failures)} part(s) failed (the rest is "
                             f"in {out}): " + "; ".join(outcome.failures))
    return outcome


def _fig6(runs, shards: list[str], out: Path, n_samples: int, failures: list[str]
          ) -> list[Path]:
    """Grad-CAM montage and adaptive-fusion weights per dataset, from fold 0 of repeat 0."""
    from fer3d.paper import cam

    written = []
    for dataset, files in shards_by_dataset(shards).items():
        pair = {r.variant: r for r in runs if r.dataset == dataset}
        missing = [v for v, _ in TARGETS["fig6"].rows if v not in pair]
        if missing:
            failures.append(f"fig6 {dataset}: no finished run of {', '.join(missing)}")
            continue
        try:
            written += cam.fig6_from_runs([pair[v] for v, _ in TARGETS["fig6"].rows], files,
                                          out, dataset, n_samples)
        except Exception as exc:  # a figure's failure must not lose the tables
            failures.append(f"fig6 {dataset}: {type(exc).__name__}: {exc}")
            log.exception("fig6 %s failed", dataset)
    return written
