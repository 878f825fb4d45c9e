"""Synthetic BU-3DFE scans: F3D VRML mesh with seamed per-corner UVs, 83-point ``.bnd``,
``_F3D.bmp`` texture and ``_F2D.bmp`` frontal picture, in the formats of docs/formats.md
(#wrl, #bnd, #images)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import BU3DFE_EXPRESSION_CODES
from ..schema import EXPRESSIONS, NEUTRAL
from ._common import (
    MARKERS_BU3DFE,
    check_variants,
    format_rows,
    hole_centres,
    in_holes,
    render,
    write_image,
    write_text,
)
from .face import face_bounds, face_height, face_mask, subject_identity
from .truth import ScanTruth, scan_truth

_BU_CODE = {name: code for code, name in BU3DFE_EXPRESSION_CODES.items()}
WRL_VARIANTS = ("crlf", "nocommas", "comments", "exponents", "reorder", "tabs", "packed")
P_QUAD, P_PENTAGON = 0.03, 0.02
TEXTURE_BACKGROUND = (40, 30, 25)


@dataclass(frozen=True)
class Bu3dfeScan:
    """One synthetic BU-3DFE scan, arrays exactly as written (before 6-digit rounding).

    vertices   (V, 3) mm, scan frame.
    sizes      (F,) corners per polygon (3, 4 or 5); ``index``/``index_uv`` hold the
               polygons' vertex / UV indices back to back (sum(sizes),).
    uv         (T, 2) VRML texture coordinates (origin bottom-left), T > V (seams).
    bnd_index  (83,) nearest vertex of each landmark (0-based); bnd_points (83, 3) mm.
    texture    (H, W, 3) uint8 RGB of ``_F3D.bmp``; f2d (S, S, 3) of ``_F2D.bmp``.
    """

    stem: str
    subject: str
    expression: str
    intensity: int
    truth: ScanTruth
    vertices: np.ndarray
    sizes: np.ndarray
    index: np.ndarray
    uv: np.ndarray
    index_uv: np.ndarray
    bnd_index: np.ndarray
    bnd_points: np.ndarray
    texture: np.ndarray
    f2d: np.ndarray

    def triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """(faces, faces_uv), each (n, 3) int64: every polygon fan-triangulated from its
        first corner, polygons in file order."""
        return fan(self.sizes, self.index), fan(self.sizes, self.index_uv)


def fan(sizes: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """(sum(sizes - 2), 3) fan triangles (v0, vk, vk+1) of polygons stored back to back."""
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    poly = np.repeat(np.arange(len(sizes)), sizes - 2)
    k = np.arange(len(poly)) - np.repeat(np.cumsum(sizes - 2) - (sizes - 2), sizes - 2)
    s = starts[poly]
    return np.column_stack([flat[s], flat[s + 1 + k], flat[s + 2 + k]]).astype(np.int64)


def bu3dfe_subjects(n: int) -> list[str]:
    """Subject ids in generation order: F0001, M0001, F0002, M0002, ..."""
    return [f"{'FM'[k % 2]}{k // 2 + 1:04d}" for k in range(n)]


def bu3dfe_scans(subject: str) -> list[tuple[str, int]]:
    """(expression, intensity) of a subject's 25 scans: NE00, then AN01..SU04."""
    return [(NEUTRAL, 0)] + [(e, k) for e in EXPRESSIONS for k in range(1, 5)]


def _grid_polygons(inside: np.ndarray, rng: np.random.Generator):
    """Polygons over the cells of a (ny, nx) vertex grid whose corners are all inside:
    mostly triangles, P_QUAD quads, P_PENTAGON cell pairs as pentagon + triangle.

    Returns (P, 5) grid vertex ids padded with -1, corners counter-clockwise seen from +z.
    """
    ny, nx = inside.shape
    cell = inside[:-1, :-1] & inside[:-1, 1:] & inside[1:, :-1] & inside[1:, 1:]
    ii, jj = np.meshgrid(np.arange(ny - 1), np.arange(nx - 1), indexing="ij")
    g = lambda di, dj: (ii + di) * nx + (jj + dj)  # noqa: E731
    a, b, c, e = g(0, 0), g(0, 1), g(1, 1), g(1, 0)
    pair = np.zeros_like(cell)
    pair[:, :-1] = cell[:, :-1] & cell[:, 1:] & (jj[:, :-1] % 2 == 0)
    pair &= rng.random(cell.shape) < P_PENTAGON
    used = pair.copy()
    used[:, 1:] |= pair[:, :-1]
    quad = cell & ~used & (rng.random(cell.shape) < P_QUAD)
    tri = cell & ~used & ~quad
    even = (ii + jj) % 2 == 0
    m = lambda arr, sel: arr[sel]  # noqa: E731
    pad = lambda rows: np.pad(np.column_stack(rows), ((0, 0), (0, 5 - len(rows))),  # noqa: E731
                              constant_values=-1)
    # The pentagon starts at E: fanning from A would give a zero-area triangle (A, B, C collinear).
    blocks = [
        pad([m(c, pair), m(a, pair), m(b, pair), m(g(0, 2), pair), m(g(1, 2), pair)]),
        pad([m(c, pair), m(e, pair), m(a, pair)]),
        pad([m(a, quad), m(b, quad), m(c, quad), m(e, quad)]),
        pad([m(a, tri & even), m(b, tri & even), m(c, tri & even)]),
        pad([m(a, tri & even), m(c, tri & even), m(e, tri & even)]),
        pad([m(a, tri & ~even), m(b, tri & ~even), m(e, tri & ~even)]),
        pad([m(b, tri & ~even), m(c, tri & ~even), m(e, tri & ~even)]),
    ]
    return np.concatenate(blocks)


def _uv_layout(bounds: tuple):
    """Affine chart maps face (x, y) -> (u, v): viewer's left half of the face to the left
    half of the texture, right half to the right half, a gap between (the seam)."""
    xmin, xmax, ymin, ymax = bounds
    half = max(-xmin, xmax) + 2.0
    y0, y1 = ymin - 2.0, ymax + 2.0

    def to_uv(x, y, chart):
        u = np.where(chart == 0, 0.02 + 0.46 * (x + half) / half, 0.52 + 0.46 * x / half)
        return np.column_stack([u, 0.02 + 0.96 * (y - y0) / (y1 - y0)])

    def raster(chart, size):
        """Face-frame (x0, y0, dx, dy) of texel centres of the chart's image half."""
        c0 = 0 if chart == 0 else size // 2
        u0 = (c0 + 0.5) / size
        dx = half / (0.46 * size)
        x_start = (u0 - 0.02) / 0.46 * half - half if chart == 0 else (u0 - 0.52) / 0.46 * half
        v0 = 1 - 0.5 / size
        return x_start, y0 + (v0 - 0.02) / 0.96 * (y1 - y0), dx, -(y1 - y0) / (0.96 * size)

    return to_uv, raster


def build_bu3dfe_scan(subject: str, expression: str, intensity: int, *, seed: int = 0,
                      vertices: int = 8000, texture_size: int = 512, f2d_size: int = 512,
                      noise: float = 0.0, holes: int = 0, spikes: float = 0.0,
                      outliers: float = 0.0, markers: bool = False) -> Bu3dfeScan:
    """Generate one scan in memory (see :func:`make_bu3dfe` for the options)."""
    if vertices < 50 or texture_size < 8 or f2d_size < 8:
        raise ValueError(f"need vertices >= 50 and image sizes >= 8, got {vertices}, "
                         f"{texture_size}, {f2d_size}")
    truth = scan_truth("bu3dfe", subject, expression, intensity, seed=seed)
    p = truth.params
    race = subject_identity(seed, "bu3dfe", subject).race
    stem = f"{subject}_{_BU_CODE[expression]}{intensity:02d}{race}"
    rng = np.random.default_rng([seed, 1, 7, intensity] + [ord(ch) for ch in stem])
    bounds = face_bounds(p)
    xy, polys = _scattered_polygons(p, bounds, vertices, rng)
    verts, polys = _corrupt(p, bounds, xy, polys, rng, noise=noise, spikes=spikes, holes=holes,
                            outliers=outliers)
    sizes = (polys >= 0).sum(axis=1)
    valid = polys >= 0
    uv, index_uv = _seam_uv(verts, polys, bounds)
    verts = verts + truth.offset
    lm = truth.landmarks.points
    d2 = ((verts[None, :, :] - lm[:, None, :]) ** 2).sum(axis=2)
    texture, f2d = _images(p, bounds, texture_size, f2d_size, MARKERS_BU3DFE if markers else None)
    return Bu3dfeScan(stem, subject, expression, intensity, truth, verts, sizes,
                      polys[valid], uv, index_uv[valid], np.argmin(d2, axis=1), lm.copy(),
                      texture, f2d)


def _scattered_polygons(p, bounds: tuple, vertices: int, rng: np.random.Generator):
    """((V, 2) face-frame xy, (P, 5) polygons, -1 padded) of a jittered grid over the face,
    vertices in an order unrelated to the grid, as in scans."""
    xmin, xmax, ymin, ymax = bounds
    step = np.sqrt(0.785 * (xmax - xmin) * (ymax - ymin) / vertices)
    xs = step * np.arange(-np.ceil(xmax / step), np.ceil(xmax / step) + 1)
    ys = step * np.arange(np.floor(ymin / step), np.ceil(ymax / step) + 1)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + rng.uniform(-0.15, 0.15, gx.shape) * step
    gy = gy + rng.uniform(-0.15, 0.15, gy.shape) * step
    polys = _grid_polygons(face_mask(p, gx, gy), rng)
    polys = polys[rng.permutation(len(polys))]
    used = np.unique(polys[polys >= 0])
    ids = np.full(gx.size, -1)
    ids[used] = rng.permutation(len(used))
    xy = np.empty((len(used), 2))
    xy[ids[used]] = np.column_stack([gx.ravel()[used], gy.ravel()[used]])
    return xy, np.where(polys >= 0, ids[np.maximum(polys, 0)], -1)


def _corrupt(p, bounds: tuple, xy: np.ndarray, polys: np.ndarray, rng: np.random.Generator, *,
             noise: float, spikes: float, holes: int, outliers: float):
    """(V', 3) vertices on the surface with noise, spikes, holes and floating outlier
    triangles, and the polygons over them (vertices no polygon uses are dropped)."""
    xmin, xmax, ymin, ymax = bounds
    z = face_height(p, xy[:, 0], xy[:, 1])
    z = z + (rng.normal(0.0, noise, len(z)) if noise > 0 else 0.0)
    if spikes > 0:
        k = rng.choice(len(z), int(round(spikes * len(z))), replace=False)
        z[k] += rng.choice([-1.0, 1.0], len(k)) * rng.uniform(5.0, 20.0, len(k))
    verts = np.column_stack([xy, z])
    if holes > 0:
        gone = in_holes(xy[:, 0], xy[:, 1], hole_centres(rng, holes, bounds))
        polys = polys[~np.any(np.where(polys >= 0, gone[np.maximum(polys, 0)], False), axis=1)]
    if outliers > 0:
        n = max(1, int(round(outliers * len(verts))))
        cx = rng.uniform(0.8 * xmin, 0.8 * xmax, n)
        cy = rng.uniform(0.8 * ymin, 0.8 * ymax, n)
        cz = face_height(p, cx, cy) + rng.choice([-1.0, 1.0], n) * rng.uniform(30.0, 80.0, n)
        tri = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 1.5, 0.0]])
        extra = (np.column_stack([cx, cy, cz])[:, None, :] + tri).reshape(-1, 3)
        new = len(verts) + np.arange(3 * n).reshape(n, 3)
        verts = np.concatenate([verts, extra])
        polys = np.concatenate([polys, np.pad(new, ((0, 0), (0, 2)), constant_values=-1)])
    keep = np.unique(polys[polys >= 0])
    remap = np.full(len(verts), -1)
    remap[keep] = np.arange(len(keep))
    return verts[keep], np.where(polys >= 0, remap[np.maximum(polys, 0)], -1)


def _seam_uv(verts: np.ndarray, polys: np.ndarray, bounds: tuple):
    """((T, 2) uv, (P, 5) uv index per polygon corner): two charts (left and right half of
    the face), each with its own uv for every vertex it uses, so the mesh has seams."""
    valid = polys >= 0
    cx = np.where(valid, verts[np.maximum(polys, 0), 0], 0).sum(axis=1) / valid.sum(axis=1)
    chart = (cx >= 0).astype(int)
    to_uv, _ = _uv_layout(bounds)
    uv_parts, index_uv, base = [], np.full(polys.shape, -1), 0
    for c in (0, 1):
        rows = chart == c
        vs = np.unique(polys[rows][valid[rows]])
        uv_parts.append(to_uv(verts[vs, 0], verts[vs, 1], np.full(len(vs), c)))
        corner = base + np.searchsorted(vs, np.maximum(polys[rows], 0))
        index_uv[rows] = np.where(valid[rows], corner, -1)
        base += len(vs)
    return np.concatenate(uv_parts), index_uv


def _images(p, bounds: tuple, texture_size: int, f2d_size: int, marks):
    """(the _F3D.bmp texture laid out as two charts, the frontal _F2D.bmp photograph)."""
    _, raster = _uv_layout(bounds)
    texture = np.empty((texture_size, texture_size, 3), np.uint8)
    for c in (0, 1):
        x0, y0, dx, dy = raster(c, texture_size)
        cols = slice(0, texture_size // 2) if c == 0 else slice(texture_size // 2, None)
        width = texture_size // 2 if c == 0 else texture_size - texture_size // 2
        texture[:, cols] = render(p, x0, y0, dx, dy, (texture_size, width),
                                  background=TEXTURE_BACKGROUND, markers=marks)
    ymin, ymax = bounds[2], bounds[3]
    scale = (ymax - ymin) / (0.85 * f2d_size)
    f2d = render(p, -scale * (f2d_size - 1) / 2, 0.5 * (ymin + ymax) + scale * (f2d_size - 1) / 2,
                 scale, -scale, (f2d_size, f2d_size), markers=marks)
    return texture, f2d


# ---------------------------------------------------------------- writers


_VIEWS = (("Front", (0, 0, 600), (0, 1, 0, 0)), ("Back", (0, 0, -600), (0, 1, 0, 3.14159)),
          ("Left", (-600, 0, 0), (0, 1, 0, -1.5708)), ("Right", (600, 0, 0), (0, 1, 0, 1.5708)),
          ("Top", (0, 600, 0), (1, 0, 0, -1.5708)), ("Bottom", (0, -600, 0), (1, 0, 0, 1.5708)))


def wrl_text(url: str, vertices: np.ndarray, sizes: np.ndarray, index: np.ndarray,
             uv: np.ndarray, index_uv: np.ndarray, variants=()) -> str:
    """VRML 2.0 text of a Tricorder F3D file (LF line ends; "crlf" is applied on writing).

    ``variants`` (see WRL_VARIANTS) change only the spelling: "nocommas", "comments",
    "exponents" (numbers as 1.23450e+01), "reorder" (fields in another order), "tabs"
    (tab separators and indentation), "packed" (each array on one line).
    """
    v = check_variants(variants, WRL_VARIANTS, "wrl")
    sep, ind = ("\t", "\t") if "tabs" in v else (" ", "  ")
    comma = "" if "nocommas" in v else ","
    exp = "exponents" in v

    def array(rows: list[str], depth: int, what: str) -> str:
        pre = ind * depth
        if "packed" in v:
            body = pre + (comma + sep).join(rows) + "\n"
        else:
            lines = [pre + r + comma for r in rows[:-1]] + [pre + rows[-1]]
            if "comments" in v:
                lines[0] += f" # first of {len(rows)} {what}"
                lines.insert(len(lines) // 2, pre + f"# {what} continue")
            body = "\n".join(lines) + "\n"
        return body

    bounds = np.r_[0, np.cumsum(sizes)]
    polys = lambda flat: [sep.join(map(str, flat[s:e].tolist())) + sep + "-1"  # noqa: E731
                          for s, e in zip(bounds[:-1], bounds[1:])]
    i4, i5 = ind * 4, ind * 5
    coord = (f"{i4}coord Coordinate {{\n{i5}point [\n"
             + array(format_rows(vertices, exponents=exp, sep=sep), 6, "points")
             + f"{i5}]\n{i4}}}\n")
    coord_index = f"{i4}coordIndex [\n" + array(polys(index), 5, "polygons") + f"{i4}]\n"
    tex = (f"{i4}texCoord TextureCoordinate {{\n{i5}point [\n"
           + array(format_rows(uv, exponents=exp, sep=sep), 6, "uvs") + f"{i5}]\n{i4}}}\n")
    tex_index = f"{i4}texCoordIndex [\n" + array(polys(index_uv), 5, "uv polygons") + f"{i4}]\n"
    flags = "".join(f"{i4}{k} {val}\n" for k, val in
                    (("ccw", "TRUE"), ("solid", "FALSE"), ("convex", "TRUE"), ("creaseAngle",
                                                                               "1.57")))
    url_line = f'{i5}url "{url}"\n'
    repeat = f"{i5}repeatS FALSE\n{i5}repeatT FALSE\n"
    if "reorder" in v:
        geometry, image = tex_index + tex + coord_index + coord + flags, repeat + url_line
    else:
        geometry, image = flags + coord + coord_index + tex + tex_index, url_line + repeat
    centre = vertices.mean(axis=0)
    views = "".join(
        f"DEF Tricorder_Camera_{name} Viewpoint {{\n{ind}position "
        + sep.join("%.6g" % (c + dc) for c, dc in zip(centre, pos))
        + f"\n{ind}orientation " + sep.join("%g" % o for o in orient)
        + f'\n{ind}fieldOfView 0.5\n{ind}description "{name}"\n}}\n'
        for name, pos, orient in _VIEWS)
    note = "# synthetic scan written by fer3d_data.synth\n" if "comments" in v else ""
    return ("#VRML V2.0 utf8\n#Tricorder Technology plc - 2000\n" + note + "\n"
            "DEF Tricorder_object Transform {\n"
            f"{ind}children [\n{ind * 2}Shape {{\n{ind * 3}appearance Appearance {{\n"
            f"{i4}texture ImageTexture {{\n" + image + f"{i4}}}\n{ind * 3}}}\n"
            f"{ind * 3}geometry IndexedFaceSet {{\n" + geometry + f"{ind * 3}}}\n"
            f"{ind * 2}}}\n{ind}]\n}}\n" + views)


def bnd_text(index: np.ndarray, points: np.ndarray) -> str:
    """83 lines ``index<TAB><TAB>x<TAB><TAB>y<TAB><TAB>z`` (no header)."""
    rows = format_rows(points, sep="\t\t")
    return "".join(f"{int(k)}\t\t{r}\n" for k, r in zip(index, rows))


def write_bu3dfe_scan(scan: Bu3dfeScan, out_dir, *, wrl_variants=(), skip=()) -> list[Path]:
    """Write ``<subject>/<stem>_F3D.wrl``, ``_F3D.bnd``, ``_F3D.bmp``, ``_F2D.bmp``;
    roles in ``skip`` ("bnd", "texture", "f2d") are left out (missing-file tests)."""
    folder = Path(out_dir) / scan.subject
    folder.mkdir(parents=True, exist_ok=True)
    crlf = "crlf" in check_variants(wrl_variants, WRL_VARIANTS, "wrl")
    base = folder / scan.stem
    bmp = Path(f"{base}_F3D.bmp")
    text = wrl_text(bmp.name, scan.vertices, scan.sizes, scan.index, scan.uv, scan.index_uv,
                    wrl_variants)
    out = [write_text(Path(f"{base}_F3D.wrl"), text, crlf)]
    if "bnd" not in skip:
        out.append(write_text(Path(f"{base}_F3D.bnd"), bnd_text(scan.bnd_index, scan.bnd_points),
                              crlf))
    if "texture" not in skip:
        out.append(write_image(bmp, scan.texture))
    if "f2d" not in skip:
        out.append(write_image(Path(f"{base}_F2D.bmp"), scan.f2d))
    return out


def make_bu3dfe(out_dir, *, subjects: int = 2, seed: int = 0, vertices: int = 8000,
                texture_size: int = 512, f2d_size: int = 512, noise: float = 0.0,
                holes: int = 0, spikes: float = 0.0, outliers: float = 0.0,
                wrl_variants=(), markers: bool = False, missing: float = 0.0,
                expressions=None) -> list[Path]:
    """Write a synthetic BU-3DFE tree: per subject NE00 + 6 expressions × intensities 01-04.

    vertices      target mesh vertex count (BU-3DFE: ~8,000; polygons ≈ 2 × vertices).
    texture_size  side of the square ``_F3D.bmp``; f2d_size: side of ``_F2D.bmp``.
    noise         gaussian sigma (mm) added to every vertex z.
    holes         disc holes (radius 3-8 mm) cut per scan.
    spikes        fraction of vertices moved 5-20 mm in z.
    outliers      floating triangles 30-80 mm off the surface, as a fraction of vertices.
    wrl_variants  spellings of WRL_VARIANTS used for every wrl (and "crlf" for the bnd).
    markers       coloured dots at MARKERS_BU3DFE landmarks in both images.
    missing       probability that each companion file (bnd, texture, f2d) is not written.
    expressions   optional subset of schema.CLASS_NAMES to generate.
    Same arguments -> same bytes. Returns the written paths.
    """
    if subjects < 1:
        raise ValueError(f"subjects must be >= 1, got {subjects}")
    written = []
    for subject in bu3dfe_subjects(subjects):
        for expression, intensity in bu3dfe_scans(subject):
            if expressions is not None and expression not in expressions:
                continue
            scan = build_bu3dfe_scan(subject, expression, intensity, seed=seed, vertices=vertices,
                                     texture_size=texture_size, f2d_size=f2d_size, noise=noise,
                                     holes=holes, spikes=spikes, outliers=outliers, markers=markers)
            rng = np.random.default_rng([seed, 1, 11] + [ord(ch) for ch in scan.stem])
            skip = [r for r, u in zip(("bnd", "texture", "f2d"), rng.random(3)) if u < missing]
            written += write_bu3dfe_scan(scan, out_dir, wrl_variants=wrl_variants, skip=skip)
    return written
