"""Labels are data on the training side: classes come from the shards (presets, --classes)
and folds.json records them, the labels preset stratifies its subject folds, sequences stay
in one fold and vote, mask-attention variants refuse maskless shards, label sets never mix.
(The end to end run on a synthetic folder collection: test_labels_end_to_end.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_runs import write_run

from fer3d.campaign import protocol
from fer3d.campaign.rundir import RunDir
from fer3d.campaign.summary import summarise
from fer3d.cli import train as train_cli
from fer3d.errors import CheckpointError, ConfigError, PlanError
from fer3d.metrics import sequence_votes
from fer3d.report import load_run, tables
from fer3d.report.text import format_summary
from fer3d.settings import TrainConfig
from fer3d.train.checkpoint import class_names_of
from fer3d_data.schema import EXPRESSIONS
from fer3d_data.shard_index import ShardIndex, read_shard_index

NAMES = ("brow_raise", "frown", "jaw_drop", "smile", "unused")


def labelled_index(rows, names=NAMES, dataset="folder") -> ShardIndex:
    """An in-memory index of ``rows`` (sample_id, subject, label name, sequence)."""
    n = len(rows)
    col = lambda i: np.array([r[i] for r in rows])  # noqa: E731
    return ShardIndex(paths=("mem.h5",), sample_id=col(0), subject=col(1),
                      expression=np.full(n, -1), intensity=np.full(n, -1),
                      shard=np.zeros(n, np.int64), row=np.arange(n), datasets=(dataset,),
                      configs=({},), image_size=32,
                      label=np.array([names.index(r[2]) for r in rows], np.int64),
                      sequence=col(3).astype(str), frame=np.full(n, -1), class_names=names)


def collection(subjects: int = 6, frames: int = 3) -> ShardIndex:
    """Per subject one scan of the first four classes and a sequence of one class."""
    rows = []
    for s in range(subjects):
        subject = f"p{s:02d}"
        rows += [(f"{subject}/{c}", subject, c, "") for c in NAMES[:4]]
        rows += [(f"{subject}/seq/{f}", subject, NAMES[s % 4], f"{subject}_seq")
                 for f in range(frames)]
    return labelled_index(rows)


# --------------------------------------------------------------------------- classes

def test_labels_preset_takes_every_labelled_sample_under_the_shards_names():
    index = collection()
    plan = protocol.make_plan(index, "labels", k=3, repeats=2, seed=1)
    assert plan.class_names == list(NAMES[:4])        # "unused" has no sample
    assert sorted(plan.sample_ids) == sorted(index.sample_id.tolist())
    assert plan.subjects == [f"p{s:02d}" for s in range(6)] and plan.stratify
    relabelled = protocol.relabel(index, plan.class_names)
    assert relabelled.class_names == NAMES[:4]
    np.testing.assert_array_equal(relabelled.label, index.label)


def test_classes_select_and_order_the_codes():
    index = collection()
    plan = protocol.make_plan(index, "labels", classes=["smile", "frown"], k=2, seed=0)
    assert plan.class_names == ["smile", "frown"]
    chosen = index.rows_of(plan.sample_ids)
    names = [index.class_names[c] for c in index.label[chosen]]
    assert set(names) == {"smile", "frown"}
    codes = protocol.relabel(index, plan.class_names).label
    assert set(codes[index.label == NAMES.index("smile")]) == {0}
    assert set(codes[index.label == NAMES.index("frown")]) == {1}
    assert set(codes[index.label == NAMES.index("jaw_drop")]) == {-1}


@pytest.mark.parametrize("classes, message", [
    (["smile", "laugh"], r"--classes: \['laugh'\] are not labels of the shards mem.h5 "
                         r"\(their labels: \['brow_raise'"),
    (["smile", "smile"], r"--classes: a class is named twice"),
    (["smile"], r"--classes: a classifier needs at least 2 classes, got \['smile'\]"),
    (["smile", "unused"], r"classes \['unused'\] have no sample in the selection from mem.h5"),
])
def test_bad_classes_are_named(classes, message):
    with pytest.raises(PlanError, match=message):
        protocol.make_plan(collection(), "labels", classes=classes, k=2)


def test_paper_presets_keep_the_six_expressions(bu3dfe_shard):
    index = read_shard_index([bu3dfe_shard])           # a shard without label columns
    assert protocol.plan_classes(index, "bu3dfe") == EXPRESSIONS
    codes = protocol.relabel(index, EXPRESSIONS).label
    np.testing.assert_array_equal(codes, np.where(index.expression < 6, index.expression, -1))
    with pytest.raises(PlanError, match=r"preset bu3dfe: \['anger', .*\] are not labels"):
        protocol.make_plan(collection(), "bu3dfe", k=2)


def test_auto_preset_of_any_other_collection_is_labels():
    index = collection()
    assert protocol.resolve_preset("auto", index) == "labels"
    paper = labelled_index([("a", "s", "smile", "")], dataset="bosphorus")
    assert protocol.resolve_preset("auto", paper) == "bosphorus"
    mixed = ShardIndex(**{**index.__dict__, "datasets": ("bu3dfe", "folder")})
    with pytest.raises(ConfigError, match=r"dataset attributes are \['bu3dfe', 'folder'\]"):
        protocol.resolve_preset("auto", mixed)


def test_classes_setting_takes_a_list_or_commas():
    cfg = TrainConfig(shards=["x.h5"], classes="smile, frown")
    assert cfg.classes == ["smile", "frown"]
    assert TrainConfig(shards=["x.h5"], classes=["a", "b"]).classes == ["a", "b"]
    assert TrainConfig(shards=["x.h5"], classes="none").classes is None
    with pytest.raises(ConfigError, match="classes: 'a,a' names a class twice"):
        TrainConfig(shards=["x.h5"], classes="a,a")


# --------------------------------------------------------------------------- folds

def test_stratified_folds_balance_the_labels():
    # 20 subjects of one label each, 12 of A and 8 of B: 4 folds of 3 A and 2 B subjects
    subjects = [f"s{i:02d}" for i in range(20)]
    counts = np.array([[5, 0] if i < 12 else [0, 5] for i in range(20)])
    folds = protocol.stratified_subject_folds(subjects, counts, k=4, repeats=3, seed=0)
    for split in folds:
        assert sorted(s for f in split for s in f) == subjects
        assert [sum(int(s[1:]) < 12 for s in f) for f in split] == [3, 3, 3, 3]
    assert folds[0] != folds[1]
    assert protocol.stratified_subject_folds(subjects, counts, 4, 2, 0) == folds[:2]


def test_folds_never_split_a_subject_or_a_sequence():
    index = collection(subjects=7, frames=4)
    plan = protocol.make_plan(index, "labels", k=3, repeats=4, seed=2)
    for r in range(plan.repeats):
        for f in range(plan.k):
            cell = plan.cell(index, r, f)
            train, test = cell["train"], cell["test"]
            assert not set(index.subject[train]) & set(index.subject[test])
            sequences = set(index.sequence[test]) - {""}
            assert sequences and not sequences & set(index.sequence[train])


def test_a_sequence_spanning_two_subjects_is_refused():
    rows = [("a0", "p1", "smile", "take1"), ("a1", "p2", "smile", "take1"),
            ("b0", "p1", "frown", ""), ("b1", "p2", "frown", "")]
    with pytest.raises(PlanError, match="sequence 'take1' spans subjects 'p1' and 'p2'"):
        protocol.make_plan(labelled_index(rows), "labels", k=2)


def test_folds_json_of_version_1_trains_the_six_expressions(bu3dfe_shard, tmp_path):
    index = read_shard_index([bu3dfe_shard])
    plan = protocol.make_plan(index, "bu3dfe", n_subjects=4, k=2, seed=0)
    old = {k: v for k, v in plan.__dict__.items() if k not in ("class_names", "stratify")}
    RunDir(tmp_path).write_plan({**old, "version": 1})
    again = RunDir(tmp_path).read_plan()
    assert again.class_names == list(EXPRESSIONS) and again.folds == plan.folds
    RunDir(tmp_path).write_plan({**old, "version": 7})
    with pytest.raises(PlanError, match="folds.json version 7, expected 2"):
        RunDir(tmp_path).read_plan()


# --------------------------------------------------------------------------- sequences

def test_sequence_votes_average_the_frames_softmaxes():
    logits = np.array([[4.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 3.0]])
    ids, labels, preds = sequence_votes(logits, np.array([0, 0, 0, 1]),
                                        np.array(["s1", "s1", "s1", ""]),
                                        np.array(["f0", "f1", "f2", "lone"]))
    # s1: frame majority (argmax) says class 1, the mean of softmaxes says class 0
    assert ids.tolist() == ["sample:lone", "sequence:s1"]
    assert labels.tolist() == [1, 0] and preds.tolist() == [1, 0]


def test_summary_gives_frame_and_sequence_accuracy():
    recs = [{"repeat": r, "fold": f, "variant": "v", "labels": [0, 1, 1],
             "predictions": [0, 1, int(r == f)], "correct": 2 + int(r == f), "total": 3,
             "sequence_correct": 1 + int(r == 0), "sequence_total": 2}
            for r in range(2) for f in range(2)]
    s = summarise(recs, 2, ["calm", "tense"])
    assert s["class_names"] == ["calm", "tense"] and set(s["per_class_accuracy"]) == {
        "calm", "tense"}
    assert s["repeat_accuracies"] == [5 / 6, 5 / 6]
    assert s["sequence_accuracy_mean"] == 0.75 and s["n_sequences"] == 8
    assert s["sequence_accuracy_spread"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    assert s["sequence_accuracy_spread_name"] == "std over repeats"
    text = format_summary(s)
    assert "frame accuracy over 2 repeat(s) x 2 folds: 83.33 ± 0.00 % (std over repeats)" in text
    assert "sequence accuracy (8 votes: one per sequence or lone scan): 75.00 ± 35.36 % (std " \
           "over repeats)" in text
    frames_only = summarise([{k: v for k, v in r.items() if not k.startswith("sequence")}
                             for r in recs], 2, ["calm", "tense"])
    assert "sequence_accuracy_mean" not in frames_only
    assert "sequence" not in format_summary(frames_only)


def test_report_of_other_label_sets_and_sequences(tmp_path):
    write_run(tmp_path / "paper", "afnet_m", seed=1)
    write_run(tmp_path / "mine", "afnet_m_no_ma", "labels", class_names=NAMES[:4],
              sequences=True)
    runs = [load_run(tmp_path / "paper"), load_run(tmp_path / "mine")]
    per_class = tables.per_class_table(runs)
    assert per_class.columns[2:] == [*EXPRESSIONS, *NAMES[:4]]
    assert per_class.rows[0][-1] is None and per_class.rows[1][2] is None
    assert per_class.rows[1][-1] == 100 * runs[1].summary["per_class_accuracy"]["smile"]
    table = tables.runs_table(runs)
    assert table.columns[-2:] == tables.SEQUENCE_COLUMNS
    assert table.rows[0][-2:] == [None, None]
    assert table.rows[1][-2] == 100 * runs[1].summary["sequence_accuracy_mean"]
    assert tables.SEQUENCE_COLUMNS[0] not in tables.runs_table(runs[:1]).columns


# --------------------------------------------------------------------------- shards

def _set_attrs(path: str, **attrs) -> str:
    with h5py.File(path, "r+") as f:
        f.attrs.update(attrs)
    return path


def test_mask_attention_refuses_a_maskless_shard(make_shard, tmp_path, capsys):
    shard = _set_attrs(make_shard("nomasks.h5", dataset="folder", n_subjects=4), masks="none")
    argv = [shard, "--folds", "2", "--image-size", "32", "--init-only"]
    assert train_cli.main([*argv, "--out", str(tmp_path / "ma")]) == 2
    err = capsys.readouterr().err
    assert ("variant afnet_m needs salient-region masks, but " + shard + " has masks 'none'"
            in err) and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ma").exists()
    assert train_cli.main([*argv, "--variant", "afnet_m_no_ma", "--out",
                           str(tmp_path / "no_ma")]) == 0


def test_shards_of_two_label_sets_are_refused_in_one_line(make_shard, tmp_path, capsys):
    a = make_shard("a.h5", dataset="folder", n_subjects=2)
    b = _set_attrs(make_shard("b.h5", dataset="folder", n_subjects=2, first_subject=2),
                   class_names=["calm", "tense", "x", "y", "z", "u", "v"])
    assert train_cli.main([a, b, "--init-only", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{b}: labels ['calm', 'tense'" in err and f"differ from {a}'s ['anger'" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_plan_records_the_classes_asked_for(make_shard, tmp_path):
    shard = make_shard("mine.h5", dataset="folder", n_subjects=4)
    assert train_cli.main([shard, "--classes", "surprise,anger,neutral", "--folds", "2",
                           "--image-size", "32", "--init-only", "--out",
                           str(tmp_path / "r")]) == 0
    plan = json.loads((tmp_path / "r" / "folds.json").read_text())
    assert plan["preset"] == "labels" and plan["version"] == 2 and plan["stratify"]
    assert plan["class_names"] == ["surprise", "anger", "neutral"]
    assert len(plan["sample_ids"]) == 4 * 3 + 1      # bs000 has a second anger scan
    config = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert config["classes"] == ["surprise", "anger", "neutral"]
    with pytest.raises(ConfigError, match=r"classes: run has \['surprise', 'anger', "
                                          r"'neutral'\], asked \['anger', 'surprise'"):
        from fer3d.campaign.run import run_campaign

        run_campaign(TrainConfig(shards=[shard], out=str(tmp_path / "r"), folds=2,
                                 image_size=32, classes="anger,surprise,neutral",
                                 resume=True))


def test_weights_without_class_names_predict_the_shards_first_labels():
    meta = {"num_classes": 2, "path": "w.pt"}
    assert class_names_of(meta, NAMES) == ["brow_raise", "frown"]
    assert class_names_of({**meta, "class_names": ["x", "y"]}, NAMES) == ["x", "y"]
    with pytest.raises(CheckpointError, match=r"w.pt: 2 outputs but 3 class names"):
        class_names_of({**meta, "class_names": ["x", "y", "z"]}, NAMES)
