"""Dataset walkers on small trees of dummy files with realistic names."""

from pathlib import Path

import pytest

from fer3d_data.datasets import select, walk_bosphorus, walk_bu3dfe, walkers
from fer3d_data.errors import Fer3dDataError
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
    assert sorted(records) == ["F0002_DI02LA", "F0002_FE01IN", "F0002_HA03BL"]
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
                                            "bs001_CAU_A22A25_0", "bs001_E_HAPPY_0", "bs001_E_SADNESS_0"]
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
    records = walkers["bu3dfe"](tmp_path)
    assert len(select(records)) == 8
    picked = select(records, subjects=["F0002"], expressions=["anger", "happiness"],
                    intensities=(3, 4))
    assert [r.scan_id for r in picked] == ["F0002_AN03WH", "F0002_AN04WH"]
    neutral = select(records, expressions=["neutral"])
    assert [r.scan_id for r in neutral] == ["F0001_NE00WH", "F0002_NE00WH"]
    with pytest.raises(ValueError, match="unknown expression names \\['happy'\\]"):
        select(records, expressions=["happy"])
