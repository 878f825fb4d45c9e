"""A final model: a finished ``fer3d-train --final`` run turned into a model directory.

Stage: trained cells -> model directory. A final run's cells are its members (one per
seed, each trained on every selected subject). Once all are done, :func:`publish_final`
writes each member's fp32 weights as ``model-{i}.safetensors`` (the metadata a model needs
in the header; the cell's weights.pt then goes: one copy of the weights), and the model
card (:mod:`fer3d.predict.card`). Rerunning the same command after that rewrites the card
only, so ``--campaign`` may be given later.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fer3d.campaign.atomic import atomic_write, write_json
from fer3d.campaign.rundir import RunDir
from fer3d.campaign.summary import cell_status
from fer3d.errors import ConfigError, RunError
from fer3d.predict.card import build_card, card_markdown, expected_accuracy
from fer3d.train.checkpoint import read_weights, save_safetensors
from fer3d.train.runtime import cell_seed

log = logging.getLogger(__name__)

# What a member's safetensors header keeps of its cell's checkpoint metadata.
MEMBER_META = ("variant", "num_classes", "image_size", "class_names", "epoch")


def check_final(cfg) -> None:
    """Before training: a final model keeps its weights, and --campaign can speak for it."""
    if cfg.keep == "none":
        raise ConfigError("--final with --keep none would keep no model: use --keep weights")
    if cfg.campaign:
        expected_accuracy(cfg.campaign, cfg.campaign_settings())


def _member(run: RunDir, i: int, seed: int) -> tuple[dict, dict]:
    """Member ``i`` as a safetensors file (made from its cell's weights once): its card
    entry and its weights' metadata."""
    cell = run.cell(i, 0)
    path = run.member(i)
    if not path.is_file():
        if not cell.weights.is_file():
            raise RunError(f"{cell.path}: finished but its weights are gone; delete the cell "
                           "and rerun to train it again")
        state, meta = read_weights(cell.weights)
        save_safetensors(state, {k: meta[k] for k in MEMBER_META if k in meta}, path)
        cell.weights.unlink()
    record = cell.read_record()
    entry = {"file": path.name, "seed": cell_seed(seed, i, 0), "epochs": record["epochs"],
             "selected_epoch": record["selected_epoch"]}
    return entry, read_weights(path)[1]


def publish_final(cfg) -> dict:
    """Members and card of the final model in ``cfg.out`` once every member is trained;
    else the run's status (members done, running, missing)."""
    run = RunDir(cfg.out)
    record = run.read_record()
    settings = record["config"]
    status = cell_status(run, int(settings["repeats"]), 1, cfg.claim_timeout)
    if status["running"] or status["missing"]:
        log.info("%d of %d members trained; the model directory is written when the last "
                 "one finishes", len(status["done"]), settings["repeats"])
        return status
    plan = run.read_plan()
    members, metas = zip(*(_member(run, i, plan.seed) for i in status["done"]))
    expected = expected_accuracy(cfg.campaign, settings) if cfg.campaign else None
    card = build_card(settings, plan, plan.shards, list(members), record.get("versions", {}),
                      expected, metas[0]["class_names"])
    write_json(card, run.model_card)
    atomic_write(run.model_card_md, lambda tmp: Path(tmp).write_text(card_markdown(card),
                                                                      encoding="utf-8"))
    log.info("%s: final model of %d member(s) (model_card.json)", run.path, len(members))
    return {"model_dir": str(run.path), "members": len(members), "card": card}
