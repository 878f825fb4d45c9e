"""BU-3DFE VRML 2.0 reader (``_F3D.wrl`` and ``_RAW.wrl``) -> :class:`Mesh`.

Stage: raw input. The file is tokenised, never read by line number: comments, commas or
none, tabs, CRLF, exponents and fields in any order are all accepted. Only the structure
(braces, brackets, field names, strings) is walked in Python; each numeric bracket body is
parsed in one ``np.fromstring`` call and polygons are fan-triangulated with numpy.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import RawFormatError
from ._common import DEFAULT_MAX_BYTES, decode_name, read_bytes
from .types import Mesh

_HEADER = b"#VRML V2.0"

# Work caps, each about 1 s of Python at most and thousands of times what a face scan holds
# (a BU-3DFE F3D file has ~160 structural tokens and a few comments): numbers are parsed by
# numpy, but comments and tokens outside number lists cost a Python step each.
MAX_COMMENTS = 1_000_000
MAX_TOKENS = 100_000

# One structural token after separators: a string, a brace/bracket, or a bare word/number.
_TOKEN = re.compile(rb'[\s,]*(?:"((?:[^"\\]|\\.)*)"|([{}\[\]])|([^\s,{}\[\]"]+))')

# Fields whose bracket body is numbers; any other bracket starting with a number is too.
_NUMERIC_FIELDS = {b"point", b"coordIndex", b"texCoordIndex"}
_NUMBER_START = frozenset(b"0123456789+-.]")

# Bytes that separate numbers (VRML whitespace and commas), also as lookup tables.
_SEPARATORS = b" \t\n\r\x0b\x0c,"
_INTEGER_CHARS = _SEPARATORS + b"0123456789-"
_SEPARATOR = np.zeros(256, dtype=bool)
_SEPARATOR[list(_SEPARATORS)] = True
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[list(b"0123456789")] = True


@dataclass
class _FaceSet:
    """Byte spans of one IndexedFaceSet's numeric fields in the comment-free text."""

    spans: dict = field(default_factory=dict)


def load_wrl(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Mesh:
    """Read a VRML 2.0 IndexedFaceSet mesh.

    Returns a :class:`Mesh`: vertices (V, 3), faces (F, 3) with every polygon fan-
    triangulated, uv (T, 2) and faces_uv (F, 3) when the file has texture coordinates
    (``texCoordIndex`` absent means it follows ``coordIndex``, as VRML specifies), and the
    ImageTexture ``url``. Several IndexedFaceSets are concatenated.

    Example:
        >>> mesh = load_wrl("F0001/F0001_AN01WH_F3D.wrl")  # doctest: +SKIP
        >>> mesh.vertices.shape, mesh.faces.shape  # doctest: +SKIP
        ((8012, 3), (15210, 3))
    """
    data = read_bytes(path, max_bytes=max_bytes)
    text = _strip_comments(_check_header(path, data))
    face_sets, urls = _scan_structure(path, text)
    if not face_sets:
        raise RawFormatError(path, "no IndexedFaceSet (missing point / coordIndex)")
    if len(set(urls)) > 1:
        raise RawFormatError(path, f"several ImageTexture urls {sorted(set(urls))}: one expected")
    parts = [_read_face_set(path, text, fs.spans) for fs in face_sets]
    return _concatenate(parts, urls[0] if urls else None)


def _check_header(path, data: bytes) -> bytes:
    """The text from the ``#VRML V2.0`` header line; refuses binary and other formats, and
    more comment marks than ``MAX_COMMENTS``."""
    if b"\x00" in data:
        raise RawFormatError(path, "binary file (NUL bytes), not VRML text")
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    body = body.lstrip()
    if not body.startswith(_HEADER):
        first = body[:40].split(b"\n")[0].decode("latin-1").strip()
        raise RawFormatError(path, f"missing header '#VRML V2.0' (file starts with {first!r})")
    hashes = body.count(b"#")
    if hashes > MAX_COMMENTS:
        raise RawFormatError(path, f"{hashes} '#' comment marks, over the cap of {MAX_COMMENTS}")
    return body


def _strip_comments(text: bytes) -> bytes:
    """``text`` with every ``#`` comment removed; a ``#`` inside a quoted string is kept.

    ``bytes.find`` hops between comments and strings (a regex would visit every byte in
    Python's regex engine). The next quote, LF and CR are each searched again only once
    passed, so the work stays linear however many comments the file holds.
    """
    pieces, start, pos = [], 0, 0
    quote, lf, cr = text.find(b'"'), text.find(b"\n"), text.find(b"\r")
    while True:
        hash_ = text.find(b"#", pos)
        if hash_ < 0:
            break
        if 0 <= quote < hash_:  # a string opens first: jump over it
            close = _string_end(text, quote)
            if close < 0:
                break  # unterminated; the tokeniser reports it
            pos = close + 1
            quote = text.find(b'"', pos)
            continue
        lf = lf if lf < 0 or lf >= hash_ else text.find(b"\n", hash_)
        cr = cr if cr < 0 or cr >= hash_ else text.find(b"\r", hash_)
        eol = min(lf if lf >= 0 else len(text), cr if cr >= 0 else len(text))
        pieces.append(text[start:hash_])
        start = pos = eol
        if 0 <= quote < pos:
            quote = text.find(b'"', pos)
    pieces.append(text[start:])
    return b" ".join(pieces)


def _string_end(text: bytes, quote: int) -> int:
    """Index of the '"' closing the string opened at ``quote`` (-1 if none)."""
    close = text.find(b'"', quote + 1)
    while close > 0 and text[close - 1] == 0x5C and text[close - 2] != 0x5C:  # escaped quote
        close = text.find(b'"', close + 1)
    return close


def _scan_structure(path, text: bytes) -> tuple[list[_FaceSet], list[str]]:
    """Walk nodes and fields; return each IndexedFaceSet's numeric spans and the urls.

    A stack holds (bracket, enclosing node type, face set index) per open ``{`` and ``[``,
    so the current node is read off the top whatever the nesting (linear time); numeric
    bracket bodies are skipped in one ``find`` so the loop only visits structural tokens.
    """
    face_sets: list[_FaceSet] = []
    urls: list[str] = []
    stack: list[tuple[bytes, bytes, int | None]] = []
    prev = b""  # previous bare word: the node type before '{', the field name before '['
    pos = 0
    for _ in range(MAX_TOKENS):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip(b" \t\r\n\x0b\x0c,"):
                raise RawFormatError(path, f"unterminated string after byte {pos}")
            break
        string, bracket, word = m.group(1, 2, 3)
        pos = m.end()
        node, fs_index = stack[-1][1:] if stack else (b"", None)
        if word is not None:
            prev = word
        elif string is not None:
            if node == b"ImageTexture" and prev == b"url":
                urls.append(decode_name(string))
                prev = b""  # only the first string of an MFString url
        elif bracket == b"{":
            if not prev[:1].isalpha():
                raise RawFormatError(path, f"'{{' without a node type at byte {pos}")
            if prev == b"IndexedFaceSet":
                face_sets.append(_FaceSet())
                fs_index = len(face_sets) - 1
            stack.append((b"{", prev, fs_index))
            prev = b""
        elif bracket == b"[":
            rest = text[pos:pos + 64].lstrip(b" \t\r\n,")
            if prev in _NUMERIC_FIELDS or (rest[:1] and rest[0] in _NUMBER_START):
                close = text.find(b"]", pos)
                if close < 0:
                    name = prev.decode("latin-1")
                    raise RawFormatError(path, f"unterminated '[' of field {name!r}")
                _record_span(path, face_sets, node, fs_index, prev, (pos, close))
                pos = close + 1
            else:  # a list of nodes or strings: walk into it, keeping the field name
                stack.append((b"[", node, fs_index))
                continue
            prev = b""
        else:  # '}' or ']'
            want = b"[" if bracket == b"]" else None
            if not stack or (stack[-1][0] == b"[") != (want is not None):
                raise RawFormatError(path, f"unbalanced {bracket.decode()!r} at byte {pos}")
            stack.pop()
            prev = b""
    else:
        raise RawFormatError(path, f"over {MAX_TOKENS} structural tokens outside number lists "
                                   "(names, braces, strings): not a face scan")
    if stack:
        raise RawFormatError(path, f"truncated: {len(stack)} unclosed braces/brackets at the end")
    return face_sets, urls


def _record_span(path, face_sets, node: bytes, fs_index, name: bytes, span) -> None:
    """Remember a numeric field's byte span in its IndexedFaceSet."""
    key = {(b"Coordinate", b"point"): "point",
           (b"TextureCoordinate", b"point"): "uv",
           (b"IndexedFaceSet", b"coordIndex"): "coordIndex",
           (b"IndexedFaceSet", b"texCoordIndex"): "texCoordIndex"}.get((node, name))
    if key is None or fs_index is None:
        return  # another node's numbers (e.g. a Viewpoint), or geometry outside any face set
    spans = face_sets[fs_index].spans
    if key in spans:
        raise RawFormatError(path, f"IndexedFaceSet {fs_index} has two {key} fields")
    spans[key] = span


def _numbers(path, body: bytes, what: str, integer: bool) -> np.ndarray:
    """(K,) int64 or float64 numbers of a bracket body; any non-numeric token is an error.

    Float parsing by ``np.fromstring`` is strict except that blank text reads as [-1].
    Integer parsing is lenient (a lone '-' reads as 0, "1-2" as 1, -2), so integer bodies
    are first checked to hold only digits, separators and '-' starting a number.
    """
    dtype = np.int64 if integer else np.float64
    if not body.strip(_SEPARATORS):
        return np.empty(0, dtype)
    if integer and not _well_formed_integers(body):
        raise RawFormatError(path, f"{what} holds tokens that are not integers")
    try:
        with warnings.catch_warnings():  # numpy < 2.3 only warns on unparsable text
            warnings.simplefilter("error", DeprecationWarning)
            values = np.fromstring(body.replace(b",", b" "), dtype=dtype, sep=" ")
    except (ValueError, DeprecationWarning):
        raise RawFormatError(path, f"{what} holds tokens that are not numbers") from None
    if not integer and not np.isfinite(values).all():
        raise RawFormatError(path, f"{what} holds non-finite numbers")
    return values


def _well_formed_integers(body: bytes) -> bool:
    """Only digits and separators, and every '-' sits between a separator and a digit."""
    if body.translate(None, _INTEGER_CHARS):
        return False
    chars = np.frombuffer(b" " + body + b" ", dtype=np.uint8)
    minus = np.flatnonzero(chars == 45)
    return bool(_DIGIT[chars[minus + 1]].all() and _SEPARATOR[chars[minus - 1]].all())


def _fan(path, index: np.ndarray, what: str, count: int,
         noun: str) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate -1-separated polygons.

    index (K,) int64 -> faces (F, 3) int64 with polygon (a, b, c, d, ...) giving
    (a, b, c), (a, c, d), ...; and the (P,) corner count of each polygon.
    """
    if index.size == 0:
        raise RawFormatError(path, f"{what} is empty")
    if index[-1] != -1:  # the last polygon may omit its -1
        index = np.append(index, -1)
    low = index.min()
    if low < -1:
        raise RawFormatError(path, f"{what} holds {low}; only -1 may be negative")
    high = index.max()
    if high >= count:
        raise RawFormatError(path, f"{what} refers to {noun} {high} but only {count} exist")
    ends = np.flatnonzero(index == -1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    sizes = ends - starts
    small = np.flatnonzero(sizes < 3)
    if small.size:
        raise RawFormatError(path, f"{what} polygon {small[0]} has {sizes[small[0]]} corners (< 3)")
    ntri = sizes - 2
    first = np.repeat(starts, ntri)
    k = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri) + 1
    faces = np.stack([index[first], index[first + k], index[first + k + 1]], axis=1)
    return faces, sizes


def _read_face_set(path, text: bytes, spans: dict) -> Mesh:
    """One IndexedFaceSet's spans -> Mesh (texture left None)."""
    for key, node in (("point", "Coordinate point"), ("coordIndex", "coordIndex")):
        if key not in spans:
            raise RawFormatError(path, f"IndexedFaceSet without {node}")

    def body(key):
        a, b = spans[key]
        return text[a:b]

    coords = _numbers(path, body("point"), "Coordinate point", integer=False)
    if coords.size % 3:
        raise RawFormatError(path, f"Coordinate point holds {coords.size} numbers, "
                                   "not a multiple of 3")
    vertices = coords.reshape(-1, 3)
    faces, sizes = _fan(path, _numbers(path, body("coordIndex"), "coordIndex", True),
                        "coordIndex", len(vertices), "vertex")
    if "uv" not in spans:
        if "texCoordIndex" in spans:
            raise RawFormatError(path, "texCoordIndex without TextureCoordinate point")
        return Mesh(vertices, faces)
    tex = _numbers(path, body("uv"), "TextureCoordinate point", integer=False)
    if tex.size % 2:
        raise RawFormatError(path, f"TextureCoordinate point holds {tex.size} numbers, "
                                   "not a multiple of 2")
    uv = tex.reshape(-1, 2)
    if "texCoordIndex" not in spans:
        if faces.max() >= len(uv):
            raise RawFormatError(path, f"no texCoordIndex and only {len(uv)} uvs "
                                       f"for {len(vertices)} vertices")
        return Mesh(vertices, faces, uv, faces.copy())
    faces_uv, uv_sizes = _fan(path, _numbers(path, body("texCoordIndex"), "texCoordIndex", True),
                              "texCoordIndex", len(uv), "uv")
    if len(uv_sizes) != len(sizes) or not np.array_equal(uv_sizes, sizes):
        bad = np.flatnonzero(uv_sizes[:len(sizes)] != sizes[:len(uv_sizes)])
        where = f"polygon {bad[0]}" if bad.size else f"{len(uv_sizes)} vs {len(sizes)} polygons"
        raise RawFormatError(path, f"texCoordIndex polygons do not match coordIndex ({where})")
    return Mesh(vertices, faces, uv, faces_uv)


def _concatenate(parts: list[Mesh], texture: str | None) -> Mesh:
    """Several face sets -> one Mesh with offset indices; uv kept only if all have it."""
    if len(parts) == 1:
        p = parts[0]
        return Mesh(p.vertices, p.faces, p.uv, p.faces_uv, texture)
    voff = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    vertices = np.concatenate([p.vertices for p in parts])
    faces = np.concatenate([p.faces + o for p, o in zip(parts, voff)])
    if any(p.uv is None for p in parts):
        return Mesh(vertices, faces, None, None, texture)
    toff = np.cumsum([0] + [len(p.uv) for p in parts[:-1]])
    uv = np.concatenate([p.uv for p in parts])
    faces_uv = np.concatenate([p.faces_uv + o for p, o in zip(parts, toff)])
    return Mesh(vertices, faces, uv, faces_uv, texture)

