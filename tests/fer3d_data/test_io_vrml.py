"""load_wrl: one tiny VRML fixture per tokeniser edge case, exact arrays, every error."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fer3d_data.io import Mesh, RawFormatError, load_wrl
from fer3d_data.io.vrml import _strip_comments

SQUARE = """#VRML V2.0 utf8
#Tricorder Technology plc - 2000
DEF Tricorder_object Transform {
  children [ Shape {
    appearance Appearance { texture ImageTexture { url "F0001_AN01WH_F3D.bmp" \
repeatS FALSE repeatT FALSE } }
    geometry IndexedFaceSet {
      ccw TRUE solid FALSE convex TRUE creaseAngle 1.57
      coord Coordinate { point [
          0 0 0,
          1 0 0,
          1 1 0,
          0 1 0
          ] }
      coordIndex [ 0 1 2 -1,
          0 2 3 -1 ]
      texCoord TextureCoordinate { point [ 0 0, 1 0, 1 1, 0 1, 0.5 0.5 ] }
      texCoordIndex [ 0 1 2 -1, 4 2 3 -1 ]
} } ] }
DEF Tricorder_Camera_Front Viewpoint { position 0 0 100 orientation 0 1 0 0 description "front" }
"""


def write(tmp_path, text, name="scan_F3D.wrl", newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def assert_square(mesh):
    assert isinstance(mesh, Mesh)
    assert mesh.vertices.shape == (4, 3) and mesh.vertices.dtype == np.float64
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    assert mesh.faces.dtype == np.int64
    assert mesh.uv.shape == (5, 2)
    np.testing.assert_array_equal(mesh.faces_uv, [[0, 1, 2], [4, 2, 3]])


def test_reference_layout(tmp_path):
    mesh = load_wrl(write(tmp_path, SQUARE))
    assert_square(mesh)
    assert mesh.texture == "F0001_AN01WH_F3D.bmp"
    np.testing.assert_array_equal(mesh.uv[4], [0.5, 0.5])


def test_crlf_and_tabs(tmp_path):
    assert_square(load_wrl(write(tmp_path, SQUARE.replace("  ", "\t"), newline="\r\n")))


def test_no_commas(tmp_path):
    assert_square(load_wrl(write(tmp_path, SQUARE.replace(",", ""))))


def test_comments_everywhere_but_hash_in_url_kept(tmp_path):
    text = (SQUARE.replace("1 0 0,", "1 0 0, # second vertex, 9 9 9")
            .replace("coordIndex [", "coordIndex [ # polygons follow ] {\n")
            .replace("F0001_AN01WH_F3D.bmp", "tex#1.bmp"))
    mesh = load_wrl(write(tmp_path, text))
    assert_square(mesh)
    assert mesh.texture == "tex#1.bmp"


def test_exponents_and_signs(tmp_path):
    text = SQUARE.replace("1 1 0,", "1.0e0 +1E+0 -0.0e-3,")
    mesh = load_wrl(write(tmp_path, text))
    np.testing.assert_array_equal(mesh.vertices[2], [1, 1, 0])


def test_fields_in_other_order(tmp_path):
    text = """#VRML V2.0 utf8
Shape { geometry IndexedFaceSet {
  texCoordIndex [ 0 1 2 -1 ]
  coordIndex [ 2 1 0 -1 ]
  texCoord TextureCoordinate { point [ 0 0 1 0 1 1 ] }
  coord Coordinate { point [ 0 0 0 1 0 0 1 1 0 ] }
  solid FALSE }
  appearance Appearance { texture ImageTexture { url [ "t.bmp" "ignored.bmp" ] } } }
"""
    mesh = load_wrl(write(tmp_path, text))
    np.testing.assert_array_equal(mesh.faces, [[2, 1, 0]])
    np.testing.assert_array_equal(mesh.faces_uv, [[0, 1, 2]])
    assert mesh.uv.shape == (3, 2) and mesh.texture == "t.bmp"


def polygon_file(coord_index, tex_index=None, nverts=6):
    points = " ".join(f"{i} {i * i} 0" for i in range(nverts))
    tex = "" if tex_index is None else (
        f"texCoord TextureCoordinate {{ point [ {' '.join(['0.5'] * 2 * 20)} ] }}\n"
        f"texCoordIndex [ {tex_index} ]")
    return (f"#VRML V2.0 utf8\nShape {{ geometry IndexedFaceSet {{\n"
            f"coord Coordinate {{ point [ {points} ] }}\ncoordIndex [ {coord_index} ]\n"
            f"{tex}\n}} }}\n")


def test_fan_triangulation_of_quads_and_pentagons(tmp_path):
    text = polygon_file("0 1 2 -1 0 1 2 3 -1 1 2 3 4 5 -1",
                        "10 11 12 -1 13 14 15 16 -1 0 1 2 3 4 -1")
    mesh = load_wrl(write(tmp_path, text))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 1, 2], [0, 2, 3],
                                               [1, 2, 3], [1, 3, 4], [1, 4, 5]])
    np.testing.assert_array_equal(mesh.faces_uv, [[10, 11, 12], [13, 14, 15], [13, 15, 16],
                                                  [0, 1, 2], [0, 2, 3], [0, 3, 4]])


def test_last_polygon_without_minus_one(tmp_path):
    mesh = load_wrl(write(tmp_path, polygon_file("0 1 2 -1 3 4 5")))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [3, 4, 5]])
    assert mesh.uv is None and mesh.faces_uv is None and mesh.texture is None


def test_seams_more_uvs_than_vertices(tmp_path):
    # vertex 1 and 2 get different uvs in the two triangles: a texture seam
    mesh = load_wrl(write(tmp_path, polygon_file("0 1 2 -1 2 1 3 -1", "0 1 2 -1 3 4 5 -1",
                                                 nverts=4)))
    assert mesh.vertices.shape == (4, 3) and mesh.uv.shape == (20, 2)
    np.testing.assert_array_equal(mesh.faces_uv, [[0, 1, 2], [3, 4, 5]])


def test_tex_coord_index_absent_follows_coord_index(tmp_path):
    text = polygon_file("0 1 2 3 -1", nverts=4).replace(
        "coordIndex", "texCoord TextureCoordinate { point [ 0 0 1 0 1 1 0 1 ] }\ncoordIndex")
    mesh = load_wrl(write(tmp_path, text))
    np.testing.assert_array_equal(mesh.faces_uv, mesh.faces)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])


def test_two_face_sets_are_concatenated(tmp_path):
    one = polygon_file("0 1 2 -1", nverts=3)
    text = one + one.replace("#VRML V2.0 utf8\n", "")
    mesh = load_wrl(write(tmp_path, text))
    assert mesh.vertices.shape == (6, 3)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [3, 4, 5]])


def test_large_mesh_shapes(tmp_path):
    rng = np.random.default_rng(0)
    verts = rng.normal(size=(500, 3))
    quads = rng.integers(0, 500, size=(300, 4))
    text = ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [\n"
            + ",\n".join(" ".join(f"{x:.17g}" for x in v) for v in verts) + "] }\ncoordIndex [\n"
            + ",\n".join(" ".join(map(str, q)) + " -1" for q in quads) + "] } }\n")
    mesh = load_wrl(write(tmp_path, text))
    np.testing.assert_array_equal(mesh.vertices, verts)
    np.testing.assert_array_equal(mesh.faces[0::2], quads[:, [0, 1, 2]])
    np.testing.assert_array_equal(mesh.faces[1::2], quads[:, [0, 2, 3]])


@pytest.mark.parametrize("text, problem", [
    ("", "empty file"),
    ("#VRML V2.0 utf8\n\x00\x01binary", "binary"),
    ("#VRML V1.0 ascii\nSeparator { }", "missing header"),
    ("solid x\nfacet normal 0 0 1", "missing header"),
    ("#VRML V2.0 utf8\nShape { }", "no IndexedFaceSet"),
    (polygon_file("0 1 2 -1").replace("coord Coordinate { point [ 0 0 0 1 1 0 2 4 0 3 9 0 "
                                      "4 16 0 5 25 0 ] }", ""),
     "without Coordinate point"),
    (polygon_file("0 1 2 -1").replace("coordIndex [ 0 1 2 -1 ]", ""), "without coordIndex"),
    (polygon_file("0 1 2 -1").replace("1 1 0", "1 abc 0"), "not numbers"),
    (polygon_file("0 1 2 -1").replace("1 1 0", "1 nan 0"), "non-finite"),
    (polygon_file("0 1 x -1"), "not integers"),
    (polygon_file("0 1 - 2 -1"), "not integers"),
    (polygon_file("0 1.5 2 -1"), "not integers"),
    (polygon_file("0 1 6 -1"), "refers to vertex 6 but only 6 exist"),
    (polygon_file("0 1 -2 -1"), "only -1 may be negative"),
    (polygon_file("0 1 2 -1", "0 1 2 3 -1"), "do not match coordIndex"),
    (polygon_file("0 1 2 -1 3 4 5 -1", "0 1 2 -1"), "do not match coordIndex"),
    (polygon_file("0 1 2 -1", "0 1 20 -1"), "refers to uv 20 but only 20 exist"),
    (polygon_file("0 1 2 -1").replace("5 25 0", "5 25"), "not a multiple of 3"),
    (polygon_file("0 1 -1"), "polygon 0 has 2 corners"),
    (polygon_file("0 1 2 -1 -1"), "polygon 1 has 0 corners"),
    (polygon_file("").replace("coordIndex [  ]", "coordIndex [ ]"), "coordIndex is empty"),
    (polygon_file("0 1 2 -1").replace("] }\ncoordIndex", "\ncoordIndex"), "1 unclosed"),
    (polygon_file("0 1 2 -1")[:-4], "unclosed"),
    (polygon_file("0 1 2 -1")[:-12], r"unterminated .\[. of field .coordIndex"),
    (polygon_file("0 1 2 -1") + "}", "unbalanced"),
    (SQUARE + SQUARE.replace("F3D.bmp", "F2D.bmp").replace("#VRML", "#"),
     "several ImageTexture urls"),
    ('#VRML V2.0\nShape { appearance Appearance { texture ImageTexture { url "a.bmp } } }',
     "unterminated string"),
])
def test_errors_name_file_and_problem(tmp_path, text, problem):
    path = write(tmp_path, text, name="bad_F3D.wrl")
    with pytest.raises(RawFormatError, match=problem) as info:
        load_wrl(path)
    assert str(info.value).startswith(str(path))


def test_missing_file_is_raw_format_error(tmp_path):
    with pytest.raises(RawFormatError, match="cannot read"):
        load_wrl(tmp_path / "absent.wrl")


# a string (or an unterminated one, kept to the end for the tokeniser to report), or a comment
_COMMENT_OR_STRING = re.compile(rb'"[^"]*(?:"|\Z)|#[^\r\n]*')


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from([b"a", b" ", b'"', b"#", b"\n", b"\r", b"\r\n", b"[ 1 ]"]),
                max_size=60).map(b"".join))
def test_strip_comments_matches_a_regex_reference(text):
    """Any mix of LF, CR, CRLF, strings and comments: comments become one space, strings
    (with their '#') stay, as a one-line regex does it (the reader hops with find instead)."""
    expected = _COMMENT_OR_STRING.sub(lambda m: m[0] if m[0][:1] == b'"' else b" ", text)
    assert _strip_comments(text) == expected
