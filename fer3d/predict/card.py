"""The model card: what a trained model is, what it takes and what to expect of it, as data.

Stage: trained weights -> their description (torch-free). Like timm's ``pretrained_cfg``,
the input contract travels with the weights: the card holds the variant, the class names,
the input contract (:func:`fer3d.train.contract.input_contract`), the preprocessing config
of the shards it learnt from (raw scans are prepared with exactly that config) and their
digests, the training settings, the versions and, when a campaign of the same settings
was run, its accuracy as the expected accuracy. A final model stores it as
``model_card.json`` (and a short ``model_card.md``); for a campaign run directory or one
of its cells it is read from the run (:func:`card_of`); an exported ONNX file carries it
as metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from fer3d.campaign.rundir import RunDir, parse_cell_name, read_json
from fer3d.errors import ConfigError, RunError
from fer3d.settings import PLAN_KEYS
from fer3d.train.contract import input_contract

CARD_FORMAT = "fer3d-model-card"
CARD_VERSION = 1
# Plan settings a campaign must share with a final model to speak for its accuracy: all
# but the split itself (a final model has no test fold) and the seed count.
EXPECTED_KEYS = tuple(k for k in PLAN_KEYS if k not in ("folds", "final"))


# --------------------------------------------------------------------------- provenance

def shard_provenance(path: str | os.PathLike) -> dict:
    """File, sample count and digests of a shard: ``config_digest`` (its /config) and
    ``digest`` (SHA-256 over every digest stored at close: config, index, errors,
    attributes; equal shards, equal digest). None where the shard stores none."""
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("digests")
        n = int(f["index/sample_id"].shape[0])
    stored = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw else {}
    whole = hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest()
    return {"file": Path(path).name, "path": os.path.abspath(path), "samples": n,
            "config_digest": stored.get("config"), "digest": whole if stored else None}


def prep_config_of(shards: list[str]) -> dict:
    """The preprocessing config shared by ``shards`` ({} when they record none)."""
    from fer3d_data.shard_index import read_shard_index

    return dict(read_shard_index(shards).configs[0])


# --------------------------------------------------------------------------- expected accuracy

def expected_accuracy(campaign: str | os.PathLike, settings: dict) -> dict:
    """The accuracy a finished campaign of the same settings measured: ConfigError naming
    every differing setting, or the campaign that is not finished."""
    run = RunDir(campaign)
    try:
        old = run.read_config()
    except RunError as exc:
        raise ConfigError(f"--campaign: {exc}") from None
    diff = [f"{k}: campaign has {old.get(k)!r}, this model {settings.get(k)!r}"
            for k in EXPECTED_KEYS if old.get(k) != settings.get(k)]
    if old.get("final"):
        diff.insert(0, "final: it is a final model, not a campaign")
    if diff:
        raise ConfigError(f"--campaign {campaign}: other settings ({'; '.join(diff)})")
    if not run.summary.is_file():
        raise ConfigError(f"--campaign {campaign}: not finished (no summary.json; "
                          f"fer3d-train --summarize {campaign} writes it when every cell is done)")
    return summary_accuracy(run)


def summary_accuracy(run: RunDir) -> dict:
    """Accuracy mean and spread of a finished run, and over what they were measured."""
    s = run.read_summary()
    return {"mean": s["accuracy_mean"], "spread": s.get("accuracy_spread"),
            "spread_name": s.get("accuracy_spread_name"), "repeats": s["repeats"],
            "folds": s["folds"], "samples": s.get("n_samples"), "campaign": str(run.path)}


# --------------------------------------------------------------------------- building

def build_card(settings: dict, plan, shards: list[str], members: list[dict], versions: dict,
               expected: dict | None, class_names: list[str]) -> dict:
    """The card of a model trained with ``settings`` (config.json's) on ``plan``'s subjects
    of ``shards``; ``members`` one entry per weights file (file, seed, epochs);
    ``class_names`` its outputs' names, as its trainer recorded them with the weights."""
    names = list(class_names)
    # a final model has no folds, and its "repeats" are its members
    training = {k: v for k, v in settings.items()
                if not (settings.get("final") and k in ("folds", "repeats"))}
    return {"format": CARD_FORMAT, "card_version": CARD_VERSION,
            "variant": settings["variant"], "num_classes": len(names), "class_names": names,
            "image_size": settings["image_size"], "input": input_contract(settings["image_size"]),
            "prep_config": prep_config_of(shards),
            "data": {"preset": plan.preset, "subjects": list(plan.subjects),
                     "samples": len(plan.sample_ids),
                     "shards": [shard_provenance(p) for p in shards]},
            "training": training, "members": members, "expected_accuracy": expected,
            "versions": versions, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def card_markdown(card: dict) -> str:
    """A short human summary of ``card``."""
    exp = card.get("expected_accuracy")
    spread = (f" ± {100 * exp['spread']:.2f} ({exp['spread_name']})"
              if exp and exp.get("spread") is not None else "")
    expected = (f"{100 * exp['mean']:.2f} %{spread}, campaign {exp['campaign']} "
                f"({exp['repeats']} x {exp['folds']}-fold)" if exp
                else "unknown (no campaign of the same settings given: --campaign RUN)")
    prep = card.get("prep_config") or {}
    t = card.get("training", {})
    lines = [f"# fer3d model: {card['variant']}", "",
             f"- classes: {', '.join(card['class_names'])}",
             f"- input: texture, depth, mask at {card['image_size']} px "
             f"(mean {card['input']['mean']}, std {card['input']['std']})",
             f"- preprocessing: {prep.get('dataset', '?')} at {prep.get('image_size', '?')} px, "
             f"crop {prep.get('crop_radius', '?')} mm, landmarks {prep.get('landmarks', '?')}",
             f"- trained on {len(card['data']['subjects'])} subjects, "
             f"{card['data']['samples']} samples ({card['data']['preset']}); "
             f"{t.get('epochs', '?')} epochs, lr {t.get('lr', '?')}, "
             f"batch {t.get('batch_size', '?')}",
             f"- members: {len(card['members'])} (probabilities averaged)",
             f"- expected accuracy: {expected}", "",
             "Use: `fer3d-predict DIR SCANS... -o predictions.csv` (docs/predict.md)."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- reading

def _run_of(path: Path) -> RunDir | None:
    """The run directory ``path`` (a run, a cell, or a weights file in a cell) belongs to."""
    if RunDir(path).exists():
        return RunDir(path)
    cell = path if path.is_dir() else path.parent
    run = RunDir(cell.parent.parent)
    return run if parse_cell_name(cell.name) and run.exists() else None


def card_of_run(run: RunDir, members: list[dict], class_names: list[str]) -> dict:
    """The card of a campaign run (its cells as the members), from its config.json, its
    plan and its shards' /config; the run's own accuracy as the expected one."""
    record = run.read_record()
    plan = run.read_plan()
    shards = [p for p in plan.shards if Path(p).is_file()]
    if len(shards) != len(plan.shards):
        missing = sorted(set(plan.shards) - set(shards))
        raise RunError(f"{run.path}: its shards {', '.join(missing)} are gone: the "
                       "preprocessing config the model needs is unknown")
    expected = summary_accuracy(run) if run.summary.is_file() else None
    return build_card(record["config"], plan, shards, members, record.get("versions", {}),
                      expected, class_names)


def card_of(path: str | os.PathLike, members: list[dict], model: dict) -> dict:
    """The card of the model at ``path`` whose ``members`` were loaded: a final model's
    model_card.json; a campaign run's (or its cell's) from the run; for a lone weights
    file, what ``model`` (its weights' metadata: variant, image_size, class_names) records
    (no preprocessing config: only shards can be predicted)."""
    path = Path(path)
    if path.is_dir() and RunDir(path).model_card.is_file():
        return read_card(RunDir(path).model_card)
    run = _run_of(path)
    if run is not None:
        return card_of_run(run, members, model["class_names"])
    return {"format": CARD_FORMAT, "card_version": CARD_VERSION, "variant": model["variant"],
            "num_classes": len(model["class_names"]), "class_names": list(model["class_names"]),
            "image_size": model["image_size"], "input": input_contract(model["image_size"]),
            "prep_config": {}, "members": members, "expected_accuracy": None}


def read_card(path: str | os.PathLike) -> dict:
    """A model_card.json; RunError naming it when missing, unreadable or not a card."""
    card = read_json(path)
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise RunError(f"{path}: not a fer3d model card")
    if card.get("card_version") != CARD_VERSION:
        raise RunError(f"{path}: model card version {card.get('card_version')!r}; this fer3d "
                       f"reads version {CARD_VERSION}")
    return card
