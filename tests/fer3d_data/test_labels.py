"""Labels are data: the shard's label contract (/index/label, class_names, sequence, frame,
masks) as the training index reads it; BU-3DFE and Bosphorus prep pinned through the
adapter registry; no prep module names a dataset."""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import fer3d_data
from fer3d_data import cli, shards, synth
from fer3d_data.datasets import ADAPTERS
from fer3d_data.datasets.select import walk_and_select
from fer3d_data.errors import Fer3dDataError
from fer3d_data.prep import PrepConfig
from fer3d_data.schema import CLASS_NAMES
from fer3d_data.shard_index import read_shard_index

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import S, fake_sample  # noqa: E402

PACKAGE = Path(fer3d_data.__file__).parent


def labelled_shard(path, labels: tuple[str, ...], rows: list[tuple[str, str, int]], **kw):
    """A shard of fake samples labelled ``rows`` (label, sequence, frame), classes ``labels``."""
    cfg = PrepConfig(image_size=S, **kw)
    with shards.ShardWriter(path, dataset=cfg.dataset, cfg=cfg, image_size=S,
                            landmark_scheme=cfg.scheme().name, landmark_names=cfg.scheme().names,
                            label_names=labels) as w:
        for i, (label, sequence, frame) in enumerate(rows):
            w.append(dataclasses.replace(fake_sample(i), expression=None, label=label,
                                         sequence=sequence, frame=frame))
    return path


def test_label_codes_and_names_reach_the_training_index(tmp_path):
    rows = [("smile", "s1", 0), ("frown", "", -1), ("smile", "s1", 1), ("au4", "", -1)]
    path = labelled_shard(tmp_path / "a.h5", ("au4", "frown", "smile"), rows)
    with h5py.File(path, "r") as f:
        assert f["index/label"].dtype == np.int16 and f["index/label"][()].tolist() == [2, 1, 2, 0]
        assert list(f.attrs["class_names"]) == list(f["index/label"].attrs["names"])
        assert f["index/expression"][()].tolist() == [-1] * 4 and f.attrs["masks"] == "landmarks"
    index = read_shard_index([path])
    assert index.class_names == ("au4", "frown", "smile") and index.masks == "landmarks"
    assert index.label.dtype == np.int64 and index.label.tolist() == [2, 1, 2, 0]
    assert index.sequence.tolist() == ["s1", "", "s1", ""]
    assert index.frame.tolist() == [0, -1, 1, -1]
    assert index.expression.tolist() == [-1] * 4  # no label here is an expression
    part = index.take(index.sequence == "s1")
    assert part.sample_id.tolist() == index.sample_id[[0, 2]].tolist()
    assert part.label.tolist() == [2, 2] and part.frame.tolist() == [0, 1]
    assert part.row.tolist() == [0, 2] and len(part) == 2
    assert shards.verify(path) == []


def test_expression_shards_keep_their_codes_and_gain_names(tmp_path):
    path = tmp_path / "bu.h5"
    with shards.ShardWriter(path, dataset="bu3dfe", cfg=PrepConfig(image_size=S), image_size=S,
                            landmark_scheme="bu3dfe83", landmark_names=[str(i) for i in
                                                                        range(1, 84)]) as w:
        for i in range(7):
            w.append(fake_sample(i))
    index = read_shard_index([path])
    assert index.class_names == CLASS_NAMES
    np.testing.assert_array_equal(index.expression, index.label)
    assert index.label.tolist() == list(range(7))


def test_shards_of_other_label_sets_are_not_read_as_one(tmp_path):
    a = labelled_shard(tmp_path / "a.h5", ("frown", "smile"), [("smile", "", -1)])
    b = labelled_shard(tmp_path / "b.h5", ("frown", "grin", "smile"), [("grin", "", -1)])
    with pytest.raises(Fer3dDataError) as e:
        read_shard_index([a, b])
    assert str(e.value) == (f"{b}: labels ['frown', 'grin', 'smile'] differ from {a}'s "
                            "['frown', 'smile']; train on shards of one label set")
    with pytest.raises(Fer3dDataError, match="labels .* differ from"):
        shards.merge(tmp_path / "m.h5", [a, b])


def test_a_shard_without_label_columns_reads_by_its_expressions(tmp_path):
    """Hand-made shards (and the fer3d tests' fixtures) have only /index/expression."""
    path = labelled_shard(tmp_path / "a.h5", CLASS_NAMES, [("fear", "", -1), ("anger", "", -1)])
    with h5py.File(path, "r+") as f:
        f["index/expression"][...] = [2, 0]
        for column in ("label", "sequence", "frame"):
            del f[f"index/{column}"]
        del f.attrs["masks"]
    index = read_shard_index([path])
    assert index.label.tolist() == [2, 0] and index.expression.tolist() == [2, 0]
    assert index.sequence.tolist() == ["", ""] and index.frame.tolist() == [-1, -1]
    assert index.masks == "landmarks"


def test_a_sample_whose_label_is_not_the_shards_is_refused(tmp_path):
    with pytest.raises(Fer3dDataError, match="label 'grin' is not one of this shard's labels"):
        labelled_shard(tmp_path / "a.h5", ("smile",), [("grin", "", -1)])


# --------------------------------------------------------------------------- the two databases

@pytest.fixture(scope="module")
def database_shards(tmp_path_factory):
    """Small BU-3DFE and Bosphorus trees with missing files and a non-expression capture
    (never selected: neither a sample nor an error row), preprocessed through the registry's
    commands."""
    root = tmp_path_factory.mktemp("databases")
    synth.make_bu3dfe(root / "bu", subjects=1, expressions=("anger", "neutral"),
                      vertices=2500, texture_size=128, f2d_size=8, missing=0.3, seed=2)
    (root / "bu" / "F0001" / "F0001_AN03LA_F3D.wrl").unlink()
    synth.make_bosphorus(root / "bs", subjects=1, expressions=("anger", "happiness", "neutral"),
                         grid=(90, 75), texture_scale=2.0, missing=0.3, seed=2)
    grid = root / "bs" / "bs000" / "bs000_N_N_0.bnt"
    (grid.parent / "bs000_LFAU_9_0.bnt").write_bytes(grid.read_bytes())
    grid.unlink()
    for dataset, folder in (("bu3dfe", "bu"), ("bosphorus", "bs")):
        assert cli.main([dataset, str(root / folder), str(root / f"{folder}.h5"), "--size", "32",
                         "--workers", "0", "--quiet"]) == 0
    return root


def _pinned(path: Path, root: Path) -> tuple[dict, list]:
    """The index columns and error rows of a database shard, after checking its labels are
    its expression codes with the expression names."""
    with shards.open_shard(path) as shard:
        assert shard.class_names == CLASS_NAMES and shard.masks == "landmarks"
        index = {k: v.tolist() for k, v in shard.index.items()}
        errors = [(e["source"], e["step"], e["message"].replace(str(root), "RAW"))
                  for e in shard.errors()]
    assert index.pop("label") == index["expression"]
    assert set(index.pop("sequence")) == {""} and set(index.pop("frame")) == {-1}
    return index, errors


@pytest.mark.slow
def test_bu3dfe_prep_pinned(database_shards):
    index, errors = _pinned(database_shards / "bu.h5", database_shards)
    ids = ["F0001_AN01LA", "F0001_AN02LA", "F0001_AN04LA", "F0001_NE00LA"]
    assert index == {"sample_id": ids, "subject": ["F0001"] * 4, "expression": [0, 0, 0, 6],
                     "intensity": [1, 2, 4, 0], "source": [f"F0001/{i}_F3D.wrl" for i in ids],
                     "mask_source": [1, 0, 0, 0]}  # AN01 has no .bnd: dlib's points
    assert errors == [("F0001/F0001_AN03LA", "read", "missing mesh file (missing: mesh)")]


@pytest.mark.slow
def test_bosphorus_prep_pinned(database_shards):
    index, errors = _pinned(database_shards / "bs.h5", database_shards)
    assert index == {"sample_id": ["bs000_E_HAPPY_0"], "subject": ["bs000"], "expression": [3],
                     "intensity": [-1], "source": ["bs000/bs000_E_HAPPY_0.bnt"],
                     "mask_source": [1]}
    assert errors == [
        ("bs000/bs000_E_ANGER_0.bnt", "read", "missing texture image bs000_E_ANGER_0.png for "
                                              "RAW/bs/bs000/bs000_E_ANGER_0.bnt"),
        ("bs000/bs000_N_N_0", "read", "missing range grid file (missing: mesh, texture)")]


# --------------------------------------------------------------------------- no dataset names

NAMES = re.compile("|".join(sorted({n for a in ADAPTERS.values() if a.label_names
                                    for n in (a.name, a.title)})), re.IGNORECASE)


def test_no_prep_module_names_a_dataset():
    """The prep driver mentions no dataset at all; the chain's steps (surface, masks,
    landmarks, shards) none in their code (docstrings may say where a rule comes from)."""
    for path in sorted((PACKAGE / "prep").glob("*.py")):
        assert not NAMES.search(path.read_text()), path
    chain = [*(PACKAGE / "surface").glob("*.py"), *(PACKAGE / "shards").glob("*.py"),
             PACKAGE / "masks.py", PACKAGE / "landmarks.py", PACKAGE / "shard_index.py"]
    for path in chain:
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docs and NAMES.search(node.value)):
                pytest.fail(f"{path}:{node.lineno}: {node.value!r}")


def test_captures_without_a_label_are_left_out_and_counted(tmp_path, capsys):
    """Bosphorus action-unit captures are no expression scans: not selected, no error row,
    and the run line says how many were left out (docs/preprocessing.md)."""
    synth.make_bosphorus(tmp_path / "bs", subjects=1, expressions=("anger",), grid=(90, 75),
                         texture_scale=2.0, seed=2)
    grid = next((tmp_path / "bs").rglob("*.bnt"))
    (grid.parent / "bs000_LFAU_9_0.bnt").write_bytes(grid.read_bytes())
    records, chosen, _ = walk_and_select("bosphorus", tmp_path / "bs", {})
    assert [r.scan_id for r in chosen] == ["bs000_E_ANGER_0"] and len(records) == 2
    assert cli.main(["bosphorus", str(tmp_path / "bs"), str(tmp_path / "bs.h5"), "--size",
                     "32", "--workers", "0"]) in (0, 1)
    assert "1 of 2 scans selected (1 without a label left out" in capsys.readouterr().err
