"""Issues 9 and 15 end to end through fer3d-prep: every input that cannot be used is an
/errors row (or a clear failure), never a silent gap; the rest is written.

A synthetic BU-3DFE tree gets a subject folder the walker cannot list, a scan whose texture
reference leaves the dataset tree (an absolute path to an image outside it), a mesh that is
a symbolic link loop; file names in another case are scans like the others.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from fer3d_data import cli, synth
from fer3d_data.datasets import ADAPTERS
from fer3d_data.shards import open_shard, verify

SELECT = ["--expressions", "anger", "--intensities", "3", "--workers", "0", "--quiet",
          "--size", "64"]


@pytest.fixture(scope="module")
def raw_tree(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("nothing_lost") / "raw"
    assert cli.main(["synth", "bu3dfe", str(raw), "--subjects", "3", "--vertices", "2500",
                     "--texture-size", "256", "--f2d-size", "64"]) == 0
    # M0001's anger-3 scan names an image outside the tree, by absolute path
    wrl = next((raw / "M0001").glob("M0001_AN03*_F3D.wrl"))
    image = wrl.with_suffix(".bmp")
    outside = raw.parent / "private.bmp"
    shutil.move(image, outside)
    text = wrl.read_text()
    assert f'url "{image.name}"' in text
    wrl.write_text(text.replace(f'url "{image.name}"', f'url "{outside}"'))
    return raw


def test_unreadable_folder_and_outside_texture_are_error_rows(raw_tree, tmp_path, capsys,
                                                              refuse_listing):
    refuse_listing(raw_tree / "F0002")
    out = tmp_path / "bu.h5"
    assert cli.main(["bu3dfe", str(raw_tree), str(out), *SELECT]) == 0
    summary = capsys.readouterr().out
    assert re.search(r"written 1\b", summary), summary
    with open_shard(out) as shard:
        assert [i[:8] for i in shard.index["sample_id"]] == ["F0001_AN"]
        errors = {e["source"]: e for e in shard.errors()}
    assert len(errors) == 2, errors
    lost = next(e for s, e in errors.items() if "F0002" in s)
    assert lost["step"] == "read" and "cannot list folder (Permission denied)" in lost["message"]
    escaped = next(e for s, e in errors.items() if "M0001" in s)
    assert escaped["step"] == "read" and "private.bmp" in escaped["message"]
    assert verify(out) == []

    # --strict: the same run fails, and says so
    assert cli.main(["bu3dfe", str(raw_tree), str(tmp_path / "strict.h5"), *SELECT,
                     "--strict"]) == 1


def test_outside_texture_is_read_only_when_allowed(raw_tree, tmp_path):
    out = tmp_path / "allowed.h5"
    assert cli.main(["bu3dfe", str(raw_tree), str(out), *SELECT, "--subjects", "M0001",
                     "--allow-outside-textures"]) == 0
    with open_shard(out) as shard:
        assert [i[:8] for i in shard.index["sample_id"]] == ["M0001_AN"] and shard.errors() == []


def test_a_subject_that_does_not_exist_is_an_error(raw_tree, tmp_path, capsys):
    assert cli.main(["bu3dfe", str(raw_tree), str(tmp_path / "x.h5"), *SELECT,
                     "--subjects", "F0001,F0009"]) == 2
    err = capsys.readouterr().err
    assert "F0009" in err and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.h5.tmp").exists()


# ---------------------------------------------------------------- issue 15


def test_a_mesh_that_is_a_symbolic_link_loop_is_an_error_row(raw_tree, tmp_path, capsys):
    """The loop aborted the whole prep (and every rerun) with a RuntimeError traceback."""
    raw = tmp_path / "raw"
    shutil.copytree(raw_tree / "F0001", raw / "F0001")
    wrl = next((raw / "F0001").glob("F0001_AN03*_F3D.wrl"))
    wrl.unlink()
    wrl.symlink_to(wrl.name)  # a link to itself
    out = tmp_path / "bu.h5"
    for _ in range(2):  # and the rerun too
        assert cli.main(["bu3dfe", str(raw), str(out), *SELECT, "--intensities", "3,4"]) == 0
        assert "Traceback" not in capsys.readouterr().err
    with open_shard(out) as shard:
        (error,) = shard.errors()
        assert len(shard) == 1  # the anger-4 scan
    assert error["source"] == f"F0001/{wrl.name}" and error["step"] == "read"
    assert error["message"] == f"{wrl}: symbolic link loop"


@pytest.mark.parametrize("dataset, rename", [("bu3dfe", str.lower), ("bosphorus", str.upper)])
def test_file_names_in_another_case_are_scans(tmp_path, dataset, rename):
    """f0001_an04la_f3d.wrl or BS000_E_ANGER_0.BNT gave neither a sample nor an error row."""
    raw = tmp_path / "raw"
    if dataset == "bu3dfe":
        synth.make_bu3dfe(raw, subjects=1, vertices=2500, texture_size=128, f2d_size=8,
                          expressions=("anger",))
    else:
        synth.make_bosphorus(raw, subjects=1, grid=(92, 76), texture_scale=1.0,
                             expressions=("neutral", "anger"))
    ids = sorted(r.scan_id for r in ADAPTERS[dataset].walk(raw))
    for path in [p for p in raw.rglob("*") if p.is_file()]:
        path.rename(path.with_name(rename(path.name)))
    records = ADAPTERS[dataset].walk(raw)
    assert sorted(r.scan_id for r in records) == ids
    assert all(r.problem is None and not r.missing for r in records), records
    out = tmp_path / "out.h5"
    assert cli.main([dataset, str(raw), str(out), "--workers", "0", "--quiet", "--size",
                     "48"]) == 0
    with open_shard(out) as shard:
        assert shard.errors() == [] and sorted(shard.index["sample_id"]) == ids
