"""Benchmark: our GridFitter (reused, steady state) against pygridfit's solver "normal".

Stage: benchmarks (docs/performance.md, docs/gridfit.md). A face-like cloud (a sphere-ish cap
with ripples, ~35k scattered points in a disk: empty grid corners, plus a hole) gridded onto
224x224. Ours, pygridfit and our crop-disk fit run in turn, ``--repeats`` rounds (ABCABC...:
the same load for each); times are the best round, ``speedup_range`` the per-round ratios.
``ours_s`` leaves out the set-up (``ours_setup_s``) and the first fit's symbolic analysis
(``ours_first_fit_s``), paid once per worker; pygridfit pays both on every call.
Prints one JSON object.

    .venv/bin/python benchmarks/bench_gridfit.py [--points 35000] [--size 224] [--repeats 5]
    .venv/bin/python benchmarks/bench_gridfit.py --smoke     # tiny sizes: does it run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _emit import emit, interleaved

from fer3d_data.surface.gridfit import GridFitter

SMOKE = {"points": 2000, "size": 32, "repeats": 2}


def face_cloud(n: int, radius: float = 90.0, seed: int = 0):
    """(n,) x, y, z of a face-like cap: a disk of points with an empty eye-sized hole."""
    rng = np.random.default_rng(seed)
    r = radius * np.sqrt(rng.random(2 * n))
    theta = 2 * np.pi * rng.random(2 * n)
    x, y = r * np.cos(theta), r * np.sin(theta)
    keep = (x + 30) ** 2 + (y - 25) ** 2 > 12.0 ** 2
    x, y = x[keep][:n], y[keep][:n]
    z = (np.sqrt(150.0 ** 2 - x ** 2 - y ** 2) - 150.0 + 3 * np.sin(x / 10)
         + rng.normal(0, 0.2, n))
    return x, y, z


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=35000)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help=f"tiny sizes: {SMOKE}")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    from pygridfit import GridFit

    x, y, z = face_cloud(args.points)
    nodes = np.linspace(-90.0, 90.0, args.size)
    t = time.perf_counter()
    fitter = GridFitter(nodes, nodes)
    setup_s = time.perf_counter() - t
    t = time.perf_counter()
    fitter.fit(x, y, z)  # first fit also runs the symbolic analysis
    first_s = time.perf_counter() - t
    # the pipeline's variant: unknowns restricted to the crop disk (+1 spacing of margin)
    xx, yy = np.meshgrid(nodes, nodes)
    disk = np.hypot(xx, yy) <= 90.0 + (nodes[1] - nodes[0])
    disk_fitter = GridFitter(nodes, nodes, active=disk)
    disk_fitter.fit(x, y, z)

    (ours_t, ours), (ref_t, ref), (disk_t, _) = interleaved([
        lambda: fitter.fit(x, y, z),
        lambda: GridFit(x, y, z, nodes, nodes, smoothness=1.0, solver="normal").fit().zgrid,
        lambda: disk_fitter.fit(x, y, z),
    ], args.repeats)
    ratios = np.array(ref_t) / np.array(ours_t)
    result = {
        "points": int(x.size), "grid": [args.size, args.size], "backend": fitter.backend,
        "repeats": args.repeats,
        "ours_s": round(min(ours_t), 4), "pygridfit_s": round(min(ref_t), 4),
        "speedup": round(min(ref_t) / min(ours_t), 2),
        "speedup_range": [round(float(ratios.min()), 2), round(float(ratios.max()), 2)],
        "max_rel_diff": float(np.abs(ours - ref).max() / np.ptp(z)),
        "ours_setup_s": round(setup_s, 4), "ours_first_fit_s": round(first_s, 4),
        "ours_disk_active_s": round(min(disk_t), 4), "disk_unknowns": int(disk.sum()),
        "speedup_disk_active": round(min(ref_t) / min(disk_t), 2),
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
