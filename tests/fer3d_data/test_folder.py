"""The generic labelled-folder adapter: its labels file, readers, frames, schemes and axes.

Fast tests on tiny hand-made files; the end-to-end runs on the synthetic folder are in
test_folder_prep.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from fer3d_data import cli
from fer3d_data.datasets import ADAPTERS, folder
from fer3d_data.datasets.frames import parse_frames, select_frames
from fer3d_data.datasets.labelfile import read_labels
from fer3d_data.errors import Fer3dDataError, RawFormatError, ScanError
from fer3d_data.io import load_mesh, load_npy, load_xyz
from fer3d_data.prep import PrepConfig, read_raw_scan
from fer3d_data.schemes import get_scheme
from fer3d_data.surface.axes import frame_matrix
from fer3d_data.synth import folder as synth_folder
from fer3d_data.synth.face import posed_face, subject_identity

HEADER = "path,subject,label,texture,landmarks,sequence,frame\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- labels file

def test_every_problem_of_the_labels_file_is_one_line(tmp_path):
    labels = write(tmp_path / "labels.csv", "path,subject,lable,colour\n"
                   "a.obj,p1,x,red\n")
    with pytest.raises(Fer3dDataError) as e:
        read_labels(labels)
    lines = str(e.value).splitlines()
    assert lines[0].endswith("labels.csv: 3 problems, no scan was read:")
    assert "unknown column 'lable' (did you mean 'label'?)" in lines[1]
    assert "unknown column 'colour'" in lines[2] and "no 'label' column" in lines[3]
    labels = write(tmp_path / "labels.csv", HEADER +
                   "a.obj,p1,smile,,,,\n"
                   "a.obj,p1,smile,,,,\n"                      # 3: duplicate path
                   "b.obj,,smile,,,,\n"                        # 4: empty subject
                   "../c.obj,p1,smile,,,,\n"                   # 5: leaves RAW
                   "d.obj,p1,smile,,/etc/lm.txt,,\n"           # 6: absolute landmarks
                   f"e.obj,{'p' * 17},smile,,,,\n"             # 7: subject too wide
                   "f.obj,p1,smile,,,s1,x\n"                   # 8: frame not a number
                   "g.obj,p1,smile,,,s2,\n"                    # 9: sequence without frame
                   "h.obj,p1,smile,,,s3,0\n"
                   "i.obj,p2,smile,,,s3,1\n"                   # 11: subject changes
                   "j.obj,p1,frown,,,s3,2\n"                   # 12: label changes
                   "k.obj,p1,smile,,,s3,0\n"                   # 13: frame repeats
                   "l.obj,p1\n")                               # 14: cells missing
    with pytest.raises(Fer3dDataError) as e:
        read_labels(labels)
    lines = str(e.value).splitlines()[1:]
    expected = ["labels.csv:14: 2 cells", "labels.csv:4: empty subject",
                "labels.csv:5: path '../c.obj' must be a relative path inside RAW",
                "labels.csv:6: landmarks '/etc/lm.txt' must be a relative path",
                "labels.csv:7: subject 'ppppppppppppppppp' has 17 UTF-8 bytes",
                "labels.csv:8: frame 'x' is not a whole number",
                "labels.csv:9: sequence 's2' without a frame number",
                "labels.csv:3: duplicate path 'a.obj' (first on line 2)",
                "labels.csv:11: sequence 's3' has subject 'p2' here but 'p1' on line 10",
                "labels.csv:12: sequence 's3' has label 'frown' here but 'smile' on line 10",
                "labels.csv:13: sequence 's3' frame 0 repeats line 10"]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected):
        assert line.strip().startswith(start), (line, start)


def test_labels_as_json_lines(tmp_path):
    rows = [{"path": "a.obj", "subject": "p1", "label": "smile", "sequence": "s", "frame": 2},
            {"path": "b.ply", "subject": 7, "label": "frown"}]
    labels = write(tmp_path / "labels.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    got = read_labels(labels)
    assert [(r.line, r.path, r.subject, r.label, r.sequence, r.frame) for r in got] == [
        (1, "a.obj", "p1", "smile", "s", 2), (2, "b.ply", "7", "frown", "", -1)]
    write(labels, json.dumps({"path": "a.obj", "subject": "p", "label": "x", "colour": 1})
          + "\n[1, 2]\n")
    with pytest.raises(Fer3dDataError, match=r"(?s)labels.jsonl:2: not a JSON object.*"
                                             r"unknown column 'colour'"):
        read_labels(labels)


def test_cli_refuses_a_bad_labels_file_before_any_work(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    labels = write(tmp_path / "labels.csv", HEADER + "a.obj,p1,smile,,,,\na.obj,p1,x,,,,\n")
    code = cli.main(["folder", str(raw), str(tmp_path / "o.h5"), "--labels", str(labels)])
    err = capsys.readouterr().err
    assert code == 2 and "labels.csv:3: duplicate path 'a.obj'" in err
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o.h5.tmp").exists()


def test_missing_and_unreadable_files_become_problem_records(tmp_path):
    raw = tmp_path / "raw"
    write(raw / "a.obj", "v 0 0 0\n")
    write(raw / "b.xyz", "0 0 0\n")
    labels = write(tmp_path / "labels.csv", HEADER + "a.obj,p1,smile,,lm.txt,,\n"
                   "b.xyz,p1,smile,,,,\nc.ply,p2,frown,,,,\n")
    records = ADAPTERS["folder"].walk(raw, labels=labels)
    problems = {r.scan_id: r.problem for r in records}
    assert problems["a.obj"] == f"{raw / 'lm.txt'}: missing landmarks file"
    assert "mesh format .xyz is not read" in problems["b.xyz"]
    assert problems["c.ply"] == f"{raw / 'c.ply'}: missing mesh file"
    assert [r.label for r in records] == ["smile", "smile", "frown"]
    assert ADAPTERS["folder"].labels(records) == ("frown", "smile")


def test_sample_ids_fit_their_column_and_stay_distinct():
    long_a, long_b = "a/" * 40 + "x.obj", "b/" * 40 + "x.obj"
    ids = {folder.sample_id(p) for p in (long_a, long_b, "p1/smile.obj")}
    assert len(ids) == 3 and "p1/smile.obj" in ids
    assert all(len(i.encode()) <= 64 for i in ids)
    assert folder.sample_id(long_a).endswith("/a/x.obj")


# --------------------------------------------------------------------------- frames

def test_frames_of_a_sequence_are_chosen_together():
    recs = [dataclasses.replace(_record(), scan_id=f"s/{k}", sequence="s", frame=k)
            for k in (4, 0, 2, 1, 3)] + [_record()]
    frames = {f: [r.frame for r in select_frames(recs, f) if r.sequence]
              for f in ("all", "apex", "every:2", "last:2")}
    assert frames == {"all": [4, 0, 2, 1, 3], "apex": [2], "every:2": [4, 0, 2],
                      "last:2": [4, 3]}
    assert len(select_frames(recs, "apex")) == 2  # the lone scan stays
    for bad in ("middle", "every:0", "last:", "all:2"):
        with pytest.raises(ValueError, match="frames must be one of"):
            parse_frames(bad)


def _record():
    return folder.ScanRecord("folder", "lone", "p1", None, -1, "", Path("x.obj"), None, None,
                             label="smile")


# --------------------------------------------------------------------------- schemes

def test_scheme_yaml_is_checked_whole(tmp_path):
    good = write(tmp_path / "s.yaml", synth_folder.SCHEME_YAML)
    scheme = get_scheme(str(good))
    assert scheme.name == "synth17" and len(scheme.names) == 17
    assert scheme.groups["nose"][3] == "nose_tip" and scheme.nose_tip == "nose_tip"
    bad = write(tmp_path / "bad.yaml", "points: [a, b, c]\nregions:\n  eye_left: [a, z]\n"
                                       "  ears: [a]\n  mouth: b\nnose_tip: q\n")
    with pytest.raises(Fer3dDataError) as e:
        get_scheme(str(bad))
    message = str(e.value)
    for part in ("unknown region 'ears'", "region eye_right is missing", "region nose is missing",
                 "region eye_left names points not in 'points': ['z']",
                 "region mouth must be a list", "nose_tip 'q' is not one of the points"):
        assert part in message
    with pytest.raises(Fer3dDataError, match="unknown landmark scheme 'ibug'"):
        get_scheme("ibug")


# --------------------------------------------------------------------------- readers

def test_text_and_npy_landmarks(tmp_path):
    points, names = load_xyz(write(tmp_path / "a.txt", "# comment\nNose tip 1 2 3\nle, 4,5,6\n"))
    assert names == ("Nose tip", "le") and points.tolist() == [[1, 2, 3], [4, 5, 6]]
    points, names = load_xyz(write(tmp_path / "b.txt", "1 2 3\n4 5 6\n"))
    assert names is None and points.shape == (2, 3)
    with pytest.raises(RawFormatError, match="every row must be"):
        load_xyz(write(tmp_path / "c.txt", "1 2 3\nx 4 5 6\n"))
    np.save(tmp_path / "d.npy", np.ones((17, 3), np.float32))
    assert load_npy(tmp_path / "d.npy").dtype == np.float64
    np.save(tmp_path / "e.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RawFormatError, match="not a .npy array"):
        load_npy(tmp_path / "e.npy")
    np.save(tmp_path / "f.npy", np.ones((4, 2)))
    with pytest.raises(RawFormatError, match=r"expected \(K, 3\)"):
        load_npy(tmp_path / "f.npy")


def _face_files(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """One small synthetic face written as OBJ+MTL+PNG, PLY with colours, OFF and GLB."""
    p = posed_face(subject_identity(0, "folder", "p01"), "smile", 4.0,
                   synth_folder.FOLDER_CLASSES["smile"])
    xyz, faces, uv, image = synth_folder.face_mesh(p, vertices=400, texture_size=32,
                                                   offset=np.zeros(3))
    raw = tmp_path / "raw"
    write(raw / "f.mtl", "newmtl face\nmap_Kd f.png\n")
    Image.fromarray(image).save(raw / "f.png")
    write(raw / "f.obj", synth_folder.obj_text(xyz, faces, uv, "f.mtl"))
    write(raw / "f.ply", synth_folder.ply_text(xyz, faces, np.full((len(xyz), 3), 90)))
    tm = trimesh.Trimesh(xyz, faces, process=False)
    write(raw / "f.off", trimesh.exchange.off.export_off(tm))
    textured = trimesh.Trimesh(xyz, faces, process=False, visual=trimesh.visual.TextureVisuals(
        uv=uv, image=Image.fromarray(image)))
    (raw / "f.glb").write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene(textured)))
    return raw, xyz


def test_mesh_formats_read_alike(tmp_path):
    raw, xyz = _face_files(tmp_path)
    meshes = {s: load_mesh(raw / f"f.{s}", root=raw) for s in ("obj", "ply", "off", "glb")}
    for suffix, mesh in meshes.items():
        assert mesh.vertices.shape == xyz.shape, suffix
        np.testing.assert_allclose(np.sort(mesh.vertices, axis=0), np.sort(xyz, axis=0),
                                   atol=1e-3, err_msg=suffix)
    assert meshes["obj"].image.shape == (32, 32, 3) and meshes["obj"].uv.shape == (len(xyz), 2)
    assert meshes["glb"].image.shape == (32, 32, 3)
    assert (meshes["ply"].colors == 90).all() and meshes["ply"].image is None
    assert meshes["off"].image is None and meshes["off"].colors is None
    write(raw / "g.obj", (raw / "f.obj").read_text().replace("f.mtl", "../x.mtl"))
    write(tmp_path / "x.mtl", "newmtl face\n")
    with pytest.raises(RawFormatError, match="outside the raw folder"):
        load_mesh(raw / "g.obj", root=raw)
    write(raw / "h.obj", (raw / "f.obj").read_text().replace("f.mtl", "none.mtl"))
    with pytest.raises(RawFormatError, match="none.mtl: cannot read file"):
        load_mesh(raw / "h.obj", root=raw)
    with pytest.raises(RawFormatError, match="no triangles"):
        load_mesh(write(raw / "p.obj", "v 0 0 0\nv 1 0 0\n"), root=raw)


def test_units_and_axes_turn_a_scan_into_the_databases_frame(tmp_path):
    raw, xyz = _face_files(tmp_path)
    lm = np.array([[-30.0, 30, 5], [30, 30, 5], [0, 0, 20]])
    # the same face stored in cm, z up and the face looking toward -y
    raw_cm = xyz @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T / 10.0
    write(raw / "cm.off", trimesh.exchange.off.export_off(trimesh.Trimesh(raw_cm, np.array(
        [[0, 1, 2]]), process=False)))
    write(raw / "cm.txt", "".join(f"{x} {y} {z}\n" for x, y, z in
                                  lm @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T / 10))
    labels = write(tmp_path / "labels.csv", HEADER + "cm.off,p1,smile,,cm.txt,,\n")
    scheme = write(tmp_path / "three.yaml", "points: [l, r, n]\nregions: {eye_left: [l], "
                                            "eye_right: [r], nose: [n], mouth: [n]}\n")
    record = ADAPTERS["folder"].walk(raw, labels=labels)[0]
    cfg = PrepConfig(dataset="folder", units="cm", up="+z", front="-y",
                     landmark_scheme=str(scheme))
    scan = read_raw_scan(record, cfg)
    np.testing.assert_allclose(scan.points, xyz[:len(scan.points)], atol=1e-9)
    np.testing.assert_allclose(scan.native.points, lm, atol=1e-9)
    assert scan.image is None and not scan.textured
    np.testing.assert_array_equal(frame_matrix("mm", "+y", "+z"), np.eye(3))


def test_texture_column_needs_texture_coordinates(tmp_path):
    raw, _ = _face_files(tmp_path)
    labels = write(tmp_path / "labels.csv", HEADER + "f.off,p1,smile,f.png,,,\n")
    record = ADAPTERS["folder"].walk(raw, labels=labels)[0]
    with pytest.raises(ScanError, match="a texture image but no texture coordinates"):
        read_raw_scan(record, PrepConfig(dataset="folder"))


def test_config_keys_belong_to_their_adapter():
    with pytest.raises(Fer3dDataError, match="units does not apply to dataset bu3dfe"):
        PrepConfig(dataset="bu3dfe", units="cm")
    with pytest.raises(Fer3dDataError, match="up \\+y and front -y must be different axes"):
        PrepConfig(dataset="folder", front="-y")
    with pytest.raises(Fer3dDataError, match="landmark_scheme: unknown landmark scheme"):
        PrepConfig(dataset="folder", landmark_scheme="ibug")
    with pytest.raises(Fer3dDataError, match="dataset must be one of"):
        PrepConfig(dataset="bu4dfe")
    assert PrepConfig(dataset="folder").scheme().name == "dlib68"


def test_synth_folder_command_writes_the_same_bytes_twice(tmp_path):
    args = ["--subjects", "1", "--frames", "2", "--vertices", "400", "--texture-size", "32"]
    for out in ("a", "b"):
        assert cli.main(["synth", "folder", str(tmp_path / out), *args]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
               for f in files)
    rows = read_labels(tmp_path / "a" / "labels.csv")
    assert len(rows) == len(synth_folder.FOLDER_CLASSES) + 2 + synth_folder.BROKEN
    assert sorted({r.label for r in rows}) == sorted(synth_folder.FOLDER_CLASSES)
    assert [r.frame for r in rows if r.sequence] == [0, 1]
    assert sum(bool(r.landmarks) for r in rows) not in (0, len(rows))
