"""Dataset walkers on small trees of dummy files with realistic names."""

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from fer3d_data.datasets import (
    ADAPTERS,
    ScanRecord,
    resolve_texture,
    select,
    walk_bosphorus,
    walk_bu3dfe,
)
from fer3d_data.errors import Fer3dDataError, ScanError, SelectionError
from fer3d_data.schema import INTENSITY_UNGRADED


def touch(root: Path, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def bu_scan(stem, folder=""):
    prefix = f"{folder}/" if folder else ""
    return [f"{prefix}{stem}_F3D.wrl", f"{prefix}{stem}_F3D.bnd", f"{prefix}{stem}_F3D.bmp",
            f"{prefix}{stem}_RAW.wrl", f"{prefix}{stem}_RAW.pse", f"{prefix}{stem}_F2D.bmp"]


def test_bu3dfe_subject_folders(tmp_path):
    touch(tmp_path, *bu_scan("F0001_AN01WH", "F0001"), *bu_scan("F0001_NE00WH", "F0001"),
          *bu_scan("M0044_SU04AE", "M0044"), "README.txt", "F0001/Thumbs.db",
          "F0001/F0001_AN01WH_F3D.obj")
    records = walk_bu3dfe(tmp_path)
    assert [r.scan_id for r in records] == ["F0001_AN01WH", "F0001_NE00WH", "M0044_SU04AE"]
    r = records[2]
    assert (r.dataset, r.subject, r.sex, r.ethnicity) == ("bu3dfe", "M0044", "M", "AE")
    assert r.capture == "F3D"
    assert (r.expression, r.intensity, r.missing) == ("surprise", 4, ())
    assert r.mesh == tmp_path / "M0044/M0044_SU04AE_F3D.wrl"
    assert r.texture == tmp_path / "M0044/M0044_SU04AE_F3D.bmp"
    assert r.landmarks == tmp_path / "M0044/M0044_SU04AE_F3D.bnd"
    assert r.extra == {"f2d": tmp_path / "M0044/M0044_SU04AE_F2D.bmp",
                       "raw_wrl": tmp_path / "M0044/M0044_SU04AE_RAW.wrl",
                       "raw_pse": tmp_path / "M0044/M0044_SU04AE_RAW.pse"}
    assert (records[1].expression, records[1].intensity) == ("neutral", 0)


def test_bu3dfe_flat_with_missing_companions(tmp_path):
    touch(tmp_path, "F0002_HA03BL_F3D.wrl", "F0002_HA03BL_F3D.bnd",      # no texture
          "F0002_DI02LA_F3D.bmp",                                         # texture only
          "F0002_FE01IN_F3D.wrl", "F0002_FE01IN_F3D.bmp", "F0002_FE01IN_F3D.bnd",
          "F0002_XX01WH_F3D.wrl", "F0002_AN00WH_F3D.wrl", "F0002_NE02WH_F3D.wrl",  # not BU names
          "notes/F0002.txt")
    records = {r.scan_id: r for r in walk_bu3dfe(tmp_path)}
    typos = ["F0002_AN00WH_F3D.wrl", "F0002_NE02WH_F3D.wrl", "F0002_XX01WH_F3D.wrl"]
    assert sorted(records) == sorted(["F0002_DI02LA", "F0002_FE01IN", "F0002_HA03BL", *typos])
    for name in typos:  # a mesh whose name is not a BU-3DFE name: a record, never ignored
        assert records[name].problem.startswith(f"{tmp_path / name}: a .wrl file whose name")
        assert not records[name].labels_known
    kept = select(records.values(), intensities=[3])  # kept whatever the filters
    assert sorted(r.scan_id for r in kept) == sorted(["F0002_HA03BL", *typos])
    no_texture, texture_only = records["F0002_HA03BL"], records["F0002_DI02LA"]
    assert no_texture.missing == ("texture",) and no_texture.texture is None
    assert texture_only.missing == ("mesh", "landmarks") and texture_only.mesh is None
    assert records["F0002_FE01IN"].missing == () and records["F0002_FE01IN"].extra == {}


def test_bosphorus_both_layouts(tmp_path):
    def scan(stem, folder=""):
        return [f"{folder}{stem}.{ext}" for ext in ("bnt", "png", "lm3", "lm2")]
    touch(tmp_path, *scan("bs000_E_ANGER_0", "bs000/"), *scan("bs000_N_N_1", "bs000/"),
          *scan("bs000_LFAU_12_0", "bs000/"), *scan("bs001_E_HAPPY_0"), "bs001_CAU_A22A25_0.bnt",
          "bs001_E_SADNESS_0.png", "bs001_E_SADNESS_0.txt", "bs001.zip", "bs000/desktop.ini")
    records = walk_bosphorus(tmp_path)
    assert [r.scan_id for r in records] == ["bs000_E_ANGER_0", "bs000_LFAU_12_0", "bs000_N_N_1",
                                            "bs001_CAU_A22A25_0", "bs001_E_HAPPY_0",
                                            "bs001_E_SADNESS_0"]
    by_id = {r.scan_id: r for r in records}
    r = by_id["bs000_E_ANGER_0"]
    assert (r.dataset, r.subject, r.capture) == ("bosphorus", "bs000", "E_ANGER")
    assert r.expression == "anger"
    assert r.intensity == INTENSITY_UNGRADED and r.sex is None and r.missing == ()
    assert r.mesh == tmp_path / "bs000/bs000_E_ANGER_0.bnt" and r.texture.suffix == ".png"
    assert r.landmarks.suffix == ".lm3" and r.landmarks2d.suffix == ".lm2"
    assert by_id["bs000_N_N_1"].expression == "neutral"
    assert by_id["bs001_E_HAPPY_0"].expression == "happiness"
    au = by_id["bs000_LFAU_12_0"]
    assert (au.expression, au.capture) == (None, "LFAU_12")
    assert by_id["bs001_CAU_A22A25_0"].missing == ("texture", "landmarks", "landmarks2d")
    assert by_id["bs001_E_SADNESS_0"].missing == ("mesh", "landmarks", "landmarks2d")


@pytest.mark.parametrize("walk", [walk_bu3dfe, walk_bosphorus])
def test_empty_tree_names_root(tmp_path, walk):
    touch(tmp_path, "README.txt", "sub/other.wrl")
    with pytest.raises(Fer3dDataError, match=f"no scans found under {tmp_path}"):
        walk(tmp_path)
    with pytest.raises(Fer3dDataError, match="is not a directory"):
        walk(tmp_path / "absent")


def test_duplicate_file_in_two_folders_is_an_error(tmp_path):
    touch(tmp_path, "F0001/F0001_AN01WH_F3D.wrl", "backup/F0001_AN01WH_F3D.wrl")
    with pytest.raises(Fer3dDataError, match="F0001_AN01WH_F3D.wrl found twice"):
        walk_bu3dfe(tmp_path)


def test_select_filters(tmp_path):
    stems = [f"{s}_{e}{i}WH" for s in ("F0001", "F0002") for e, i in
             (("AN", "03"), ("AN", "04"), ("HA", "01"), ("NE", "00"))]
    touch(tmp_path, *(f"{stem}_F3D.wrl" for stem in stems))
    records = ADAPTERS["bu3dfe"].walk(tmp_path)
    assert len(select(records)) == 8
    picked = select(records, subjects=["F0002"], expressions=["anger", "happiness"],
                    intensities=(3, 4))
    assert [r.scan_id for r in picked] == ["F0002_AN03WH", "F0002_AN04WH"]
    neutral = select(records, expressions=["neutral"])
    assert [r.scan_id for r in neutral] == ["F0001_NE00WH", "F0002_NE00WH"]
    with pytest.raises(ValueError, match="unknown expression names \\['happy'\\]"):
        select(records, expressions=["happy"])


# --- nothing lost silently (issue 9) -------------------------------------------------------

def two_subjects(root: Path) -> None:
    touch(root, *bu_scan("F0001_AN03WH", "F0001"), *bu_scan("F0002_AN04WH", "F0002"),
          *bu_scan("F0002_HA03WH", "F0002"))


def check_unreadable_folder(records, root: Path) -> None:
    assert [r.scan_id for r in records] == ["F0001_AN03WH", "F0002"]
    lost = records[1]
    assert (lost.subject, lost.mesh, lost.root, lost.labels_known) == ("F0002", root / "F0002",
                                                                       root, False)
    assert lost.problem == f"{root / 'F0002'}: cannot list folder (Permission denied)"
    assert records[0].problem is None and records[0].labels_known
    # kept by label filters (it may hold any scan), dropped only by another subject
    assert select(records, expressions=["anger"], intensities=[3]) == records
    assert select(records, subjects=["F0002"]) == [lost]
    assert select(records, subjects=["F0001"]) == [records[0]]
    with pytest.raises(SelectionError,
                       match="present: F0001, F0002; 1 folders could not be walked"):
        select(records, subjects=["F0003"])


def test_unlistable_subject_folder_becomes_a_record(tmp_path, refuse_listing):
    two_subjects(tmp_path)
    refuse_listing(tmp_path / "F0002")
    check_unreadable_folder(walk_bu3dfe(tmp_path), tmp_path)


def _as_unprivileged(fn) -> None:
    """Run ``fn`` in a forked child that is not root (root may list any folder), so a
    mode-000 folder is really unreadable; the child's assertion failure fails the test."""
    if os.geteuid() != 0:
        fn()
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, report through the pipe, never return to pytest
        os.close(read)
        message = b""
        try:
            os.setgid(65534)
            os.setuid(65534)
            fn()
        except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
            message = f"{type(e).__name__}: {e}".encode()
        os.write(write, message or b"ok")
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        result = fh.read().decode()
    os.waitpid(pid, 0)
    assert result == "ok", result


@pytest.fixture
def open_tmp():
    """A temporary folder anyone may enter, for checks run by :func:`_as_unprivileged`
    (pytest's tmp_path lies in a folder only its owner may enter)."""
    root = Path(tempfile.mkdtemp(prefix="fer3d-unprivileged-"))
    root.chmod(0o755)
    yield root
    for path in (root, *root.rglob("*")):  # a mode-000 folder could not be emptied
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(root)


def test_mode_000_subject_folder_becomes_a_record(open_tmp):
    two_subjects(open_tmp)
    (open_tmp / "F0002").chmod(0)
    _as_unprivileged(lambda: check_unreadable_folder(walk_bu3dfe(open_tmp), open_tmp))


def test_unlistable_root_and_only_unlistable_folders_are_errors(tmp_path, monkeypatch,
                                                                refuse_listing):
    two_subjects(tmp_path)
    refuse_listing(tmp_path)
    with pytest.raises(Fer3dDataError, match="cannot list folder \\(Permission denied\\)"):
        walk_bu3dfe(tmp_path)
    monkeypatch.undo()
    (tmp_path / "F0001").rename(tmp_path / "F0003")
    for name in ("F0002", "F0003"):
        for f in (tmp_path / name).iterdir():
            f.unlink()
    (tmp_path / "F0003" / "F0003_AN01WH_F3D.wrl").write_bytes(b"")
    refuse_listing(tmp_path / "F0003")
    with pytest.raises(Fer3dDataError, match="no scans found .*F0003: cannot list folder"):
        walk_bu3dfe(tmp_path)


def test_linked_folder_becomes_a_record(tmp_path):
    touch(tmp_path / "raw", *bu_scan("F0001_AN03WH", "F0001"))
    touch(tmp_path / "elsewhere", *bu_scan("bs000_E_ANGER_0", "bs000"))
    touch(tmp_path / "elsewhere",
          *[f"bs001/bs001_E_FEAR_0.{e}" for e in ("bnt", "png", "lm3", "lm2")])
    touch(tmp_path / "raw2", *[f"bs000/bs000_E_ANGER_0.{e}" for e in ("bnt", "png", "lm3", "lm2")])
    (tmp_path / "raw2" / "bs001").symlink_to(tmp_path / "elsewhere" / "bs001")
    records = walk_bosphorus(tmp_path / "raw2")
    assert [r.scan_id for r in records] == ["bs000_E_ANGER_0", "bs001"]
    assert "symbolic link to a folder, not followed" in records[1].problem
    assert records[1].subject == "bs001"


def test_unreadable_scan_files_set_the_problem(open_tmp):
    touch(open_tmp, *bu_scan("F0001_AN03WH", "F0001"), *bu_scan("F0001_AN04WH", "F0001"))
    folder = open_tmp / "F0001"
    os.mkfifo(folder / "F0001_SU04WH_F3D.wrl")
    (folder / "F0001_AN03WH_F3D.bmp").unlink()
    (folder / "F0001_AN03WH_F3D.bmp").symlink_to(open_tmp / "gone.bmp")
    locked = folder / "F0001_AN04WH_F3D.bnd"
    locked.chmod(0)

    def check():
        broken, unreadable, fifo = walk_bu3dfe(open_tmp)
        assert fifo.problem == f"{folder / 'F0001_SU04WH_F3D.wrl'}: not a regular file"
        assert broken.problem == f"{folder / 'F0001_AN03WH_F3D.bmp'}: broken symbolic link"
        assert unreadable.problem == f"{locked}: not readable (permission denied)"
        assert broken.labels_known and select([broken, unreadable], intensities=[4]) == [unreadable]
    _as_unprivileged(check)


def test_select_refuses_a_subject_no_scan_has(tmp_path):
    two_subjects(tmp_path)
    records = walk_bu3dfe(tmp_path)
    with pytest.raises(SelectionError,
                       match="no scan has subject 'f0002' \\(did you mean 'F0002'\\?\\)"):
        select(records, subjects=["F0001", "f0002"])
    with pytest.raises(SelectionError, match="subject 'X9999'; present: F0001, F0002"):
        select(records, subjects=["X9999"])
    with pytest.raises(SelectionError, match="no scan has intensity 2; present: 3, 4"):
        select(records, intensities=[2, 3])
    touch(tmp_path / "bs", *[f"bs000_E_ANGER_0.{e}" for e in ("bnt", "png", "lm3", "lm2")])
    with pytest.raises(SelectionError, match="intensity 3, 4; present: ungraded"):
        select(walk_bosphorus(tmp_path / "bs"), intensities=[3, 4])


# --- texture references stay inside the dataset tree ---------------------------------------

def textured(tmp_path) -> ScanRecord:
    touch(tmp_path / "raw", *bu_scan("F0001_AN03WH", "F0001"))
    return walk_bu3dfe(tmp_path / "raw")[0]


def test_texture_named_beside_the_mesh_else_the_walkers(tmp_path):
    record = textured(tmp_path)
    (record.mesh.parent / "other.bmp").write_bytes(b"x")
    assert resolve_texture(record, "other.bmp") == record.mesh.parent / "other.bmp"
    assert resolve_texture(record, "absent.bmp") == record.texture
    assert resolve_texture(record, None) == record.texture
    no_texture = dataclasses.replace(record, texture=None)
    with pytest.raises(ScanError, match="missing texture image absent.bmp for") as info:
        resolve_texture(no_texture, "absent.bmp")
    assert info.value.step == "read"


@pytest.mark.parametrize("url", ["/PRIVATE", "../../PRIVATE", "../../raw/../PRIVATE"])
def test_texture_reference_leaving_the_root_is_refused(tmp_path, url):
    record = textured(tmp_path)
    secret = tmp_path / "private.png"
    secret.write_bytes(b"x")
    url = url.replace("PRIVATE", str(secret) if url.startswith("/") else "private.png")
    with pytest.raises(ScanError, match="texture reference .* is outside the dataset root") as info:
        resolve_texture(record, url)
    assert (info.value.step, info.value.scan_id) == ("read", "F0001_AN03WH")
    assert str(record.mesh) in info.value.message
    assert resolve_texture(record, url, allow_outside=True).resolve() == secret.resolve()


def test_texture_linked_out_of_the_root_is_refused(tmp_path):
    record = textured(tmp_path)
    secret = tmp_path / "private.png"
    secret.write_bytes(b"x")
    (record.mesh.parent / "link.bmp").symlink_to(secret)
    with pytest.raises(ScanError, match="outside the dataset root .* through a symbolic link"):
        resolve_texture(record, "link.bmp")
    record.texture.unlink()
    record.texture.symlink_to(secret)
    with pytest.raises(ScanError, match="texture .* through a symbolic link"):
        resolve_texture(record, None)
    assert resolve_texture(record, None, allow_outside=True) == record.texture


def test_texture_inside_a_linked_root_is_accepted(tmp_path):
    record = textured(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "raw")
    linked = walk_bu3dfe(tmp_path / "link")[0]
    assert (resolve_texture(linked, record.texture.name)
            == tmp_path / "link/F0001" / record.texture.name)
    by_hand = dataclasses.replace(record, root=None)  # no root: the mesh's folder is the tree
    with pytest.raises(ScanError, match="outside"):
        resolve_texture(by_hand, "../F0001_AN03WH_F3D.bmp")
