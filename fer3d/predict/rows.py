"""Prediction rows: every input prepared, batched through the model, one row each, in order.

Stage: inputs -> rows (torch-free). Raw scans go through the prep chain with the model's
config (:func:`fer3d_data.prep.scan_results`: in this process or ``workers`` processes,
each bounded by the config's ``scan_timeout``); a scan that fails is a row with its error
and the others go on. Prepared samples are batched (the predictor's ``batch_size``), their
probabilities the members' mean softmax. :func:`write_rows` writes CSV or JSON lines.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys

import numpy as np

from fer3d.predict import scans
from fer3d_data.prep import scan_results
from fer3d_data.shards import MASK_SOURCES

STORED = ("texture", "depth", "coverage", "mask56")


def _prepared(found: scans.Inputs, prep: dict, workers: int, batch: int):
    """(row columns, stored arrays or None for a failed scan) per input, in order."""
    if found.scans:
        cfg = scans.prediction_config(prep)
        with contextlib.closing(scan_results(found.scans, cfg, workers)) as results:
            for record, result in results:
                row = scans.scan_row(record)
                if result[0] != "ok":
                    yield {**row, "error": f"{result[1]}: {result[2]}"}, None
                    continue
                sample = result[1]
                row["landmarks"] = MASK_SOURCES[sample.mask_source]
                row["warning"] = scans.DLIB_WARNING if row["landmarks"] == "dlib" else ""
                yield row, scans.sample_arrays(sample)
    for shard in found.shards:
        yield from scans.shard_rows(shard, batch)


def _complete(row: dict, class_names, probs: np.ndarray | None) -> dict:
    """A row with every column, in the output's order."""
    out = {"input": row["input"], "sample_id": row["sample_id"], "label": row["label"],
           "predicted": "" if probs is None else class_names[int(probs.argmax())]}
    for k, name in enumerate(class_names):
        out[f"p_{name}"] = None if probs is None else round(float(probs[k]), 6)
    out.update(landmarks=row.get("landmarks", ""), warning=row.get("warning", ""),
               error=row.get("error", ""))
    return out


def mean_softmax(logits: np.ndarray) -> np.ndarray:
    """(N, members, classes) logits -> (N, classes): the mean of the members' softmaxes."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=-1, keepdims=True)).mean(axis=1)


def _flush(model, pending: list, cam_dir) -> list[dict]:
    """Rows of ``pending`` (row, arrays or None), the prepared ones through the model."""
    ok = [(row, arrays) for row, arrays in pending if arrays is not None]
    probs: dict[int, np.ndarray] = {}
    if ok:
        stacked = {k: np.stack([a[k] for _, a in ok]) for k in STORED}
        inputs = model.inputs(stacked, 0, len(ok))
        for (row, _), p in zip(ok, mean_softmax(model.members.logits(inputs))):
            probs[id(row)] = p
        if cam_dir is not None:
            model.members.cams(inputs, [r["sample_id"] for r, _ in ok], model.class_names,
                               cam_dir)
    return [_complete(row, model.class_names, probs.get(id(row))) for row, _ in pending]


def _total(found: scans.Inputs) -> int:
    from fer3d_data.shard_index import read_shard_index

    return len(found.scans) + (len(read_shard_index(found.shards)) if found.shards else 0)


def prediction_rows(model, found: scans.Inputs, prep: dict, *, workers: int = 0,
                    progress: bool = False, cam_dir=None):
    """Rows of every input of ``found``, in order (see :meth:`Predictor.rows`)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=_total(found), unit="input", desc="predict", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    pending: list = []
    try:
        for row, arrays in _prepared(found, prep, workers, model.batch_size):
            pending.append((row, arrays))
            if sum(a is not None for _, a in pending) >= model.batch_size:
                yield from _flush(model, pending, cam_dir)
                bar.update(len(pending))
                pending = []
        yield from _flush(model, pending, cam_dir)
        bar.update(len(pending))
    finally:
        bar.close()


def write_rows(rows, out, as_json: bool = False) -> int:
    """Write ``rows`` to the open text file ``out`` (CSV with a header, or JSON lines) as
    they come; returns the number of error rows."""
    errors, writer = 0, None
    for row in rows:
        errors += bool(row["error"])
        if as_json:
            out.write(json.dumps(row) + "\n")
        else:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(row))
                writer.writeheader()
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        out.flush()
    return errors


def open_output(path: str | os.PathLike | None):
    """The output file (``-`` or None: standard output)."""
    if path in (None, "-"):
        return contextlib.nullcontext(sys.stdout)
    return open(path, "w", newline="", encoding="utf-8")
