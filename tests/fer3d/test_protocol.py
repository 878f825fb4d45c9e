"""Subject selection, repeated subject-independent folds, folds.json."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from fer3d.campaign import protocol
from fer3d.campaign.rundir import RunDir
from fer3d_data.errors import Fer3dDataError
from fer3d_data.shard_index import read_shard_index as read_index


@pytest.fixture(scope="module")
def index(shard_factory):
    return read_index([shard_factory("twelve.h5", n_subjects=12, size=32)])


def test_bu3dfe_preset_keeps_intensities_3_4_of_six_expressions(index):
    rows = protocol.eligible_rows(index, "bu3dfe")
    assert len(rows) == 12 * 6 * 2
    assert set(index.intensity[rows].tolist()) == {3, 4}
    assert set(index.expression[rows].tolist()) == set(range(6))


def test_bosphorus_one_scan_per_emotion(make_shard):
    idx = read_index([make_shard("bs.h5", dataset="bosphorus", n_subjects=3)])
    rows = protocol.eligible_rows(idx, "bosphorus")
    assert len(rows) == 3 * 6
    ids = idx.sample_id[rows].tolist()
    assert "bs000_E_ANGER_0" in ids and "bs000_E_ANGER_1" not in ids
    assert protocol.eligible_subjects(idx, "bosphorus") == ["bs000", "bs001", "bs002"]


def test_select_subjects_seeded_and_sized(index):
    a = protocol.select_subjects(index, "bu3dfe", n_subjects=5, seed=3)
    assert len(a) == 5 and a == sorted(a)
    assert a == protocol.select_subjects(index, "bu3dfe", n_subjects=5, seed=3)
    assert a != protocol.select_subjects(index, "bu3dfe", n_subjects=5, seed=4)
    assert len(protocol.select_samples(index, "bu3dfe", a)) == 5 * 12


def test_fewer_subjects_than_asked_uses_all_and_logs(index, caplog):
    with caplog.at_level(logging.WARNING, logger="fer3d.campaign.protocol"):
        got = protocol.select_subjects(index, "bu3dfe", n_subjects=60)
    assert got == [f"F{i:04d}" for i in range(1, 13)]
    assert "only 12 subjects" in caplog.text


def test_incomplete_subject_is_not_eligible(make_shard):
    idx = read_index([make_shard("x.h5", n_subjects=3)])
    keep = ~((idx.subject == "F0002") & (idx.expression == 4) & (idx.intensity == 3))
    idx = idx.take(keep)
    assert protocol.eligible_subjects(idx, "bu3dfe") == ["F0001", "F0003"]


def test_subject_folds_disjoint_and_complete():
    subjects = [f"S{i:02d}" for i in range(23)]
    plan = protocol.subject_folds(subjects, k=5, repeats=3, seed=7)
    assert len(plan) == 3
    for folds in plan:
        assert len(folds) == 5
        assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
        flat = [s for f in folds for s in f]
        assert sorted(flat) == subjects          # each subject tested exactly once
    assert plan[0] != plan[1] != plan[2]          # a new split per repeat
    assert plan == protocol.subject_folds(subjects, k=5, repeats=3, seed=7)
    assert protocol.subject_folds(subjects, k=5, repeats=2, seed=7) == plan[:2]


def test_too_few_subjects_for_k():
    with pytest.raises(ValueError, match="10-fold cross-validation needs at least 10 subjects; "
                                         "the selection has 6"):
        protocol.subject_folds([f"S{i}" for i in range(6)], k=10)


def test_plan_cells_test_every_sample_once(index):
    plan = protocol.make_plan(index, "bu3dfe", n_subjects=10, k=5, repeats=2, seed=1)
    assert len(plan.sample_ids) == 10 * 12
    for r in range(2):
        tested = []
        for f in range(5):
            cell = plan.cell(index, r, f)
            train_s = set(index.subject[cell["train"]].tolist())
            test_s = set(index.subject[cell["test"]].tolist())
            assert not train_s & test_s
            assert len(cell["train"]) + len(cell["test"]) == 120 and len(cell["val"]) == 0
            tested += index.sample_id[cell["test"]].tolist()
        assert sorted(tested) == sorted(plan.sample_ids)


def test_validation_carved_from_training_subjects(index):
    plan = protocol.make_plan(index, "bu3dfe", n_subjects=10, k=5, seed=1, val_subjects=2)
    cell = plan.cell(index, 0, 3)
    val_s = set(index.subject[cell["val"]].tolist())
    assert len(val_s) == 2
    assert not val_s & set(index.subject[cell["train"]].tolist())
    assert not val_s & set(plan.folds[0][3])
    assert len(cell["train"]) + len(cell["val"]) + len(cell["test"]) == 120


def test_folds_json_roundtrip_and_extension(index, tmp_path):
    plan = protocol.make_plan(index, "bu3dfe", n_subjects=10, k=5, repeats=1, seed=2)
    RunDir(tmp_path).write_plan(dataclasses.asdict(plan))
    again = RunDir(tmp_path).read_plan()
    assert again == plan
    longer = protocol.extend_plan(again, 3, index)
    assert longer.repeats == 3 and longer.folds[0] == plan.folds[0]
    np.testing.assert_array_equal(index.rows_of(plan.sample_ids[:3]),
                                  protocol.select_samples(index, "bu3dfe", plan.subjects)[:3])
    with pytest.raises(Fer3dDataError, match="not in the shards"):
        index.rows_of(["nope"])
