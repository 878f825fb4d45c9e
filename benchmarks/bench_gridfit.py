"""Benchmark: our GridFitter (reused, steady state) against pygridfit's solver "normal".

A face-like cloud (a sphere-ish cap with ripples, ~35k scattered points in a disk: empty
grid corners, plus a hole) gridded onto 224x224. Prints one JSON object.

    .venv/bin/python benchmarks/bench_gridfit.py [--points 35000] [--size 224] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fer3d_data.surface.gridfit import GridFitter


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


def interleaved(fns, repeats: int) -> list[tuple[float, np.ndarray]]:
    """Run the callables in turn ``repeats`` times (fair under a fluctuating load) and
    return each one's best time and last output."""
    best, outs = [np.inf] * len(fns), [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return list(zip(best, outs))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=35000)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    from pygridfit import GridFit

    x, y, z = face_cloud(args.points)
    nodes = np.linspace(-90.0, 90.0, args.size)
    zrange = float(np.ptp(z))

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

    (ours_s, ours), (ref_s, ref), (disk_s, _) = interleaved([
        lambda: fitter.fit(x, y, z),
        lambda: GridFit(x, y, z, nodes, nodes, smoothness=1.0, solver="normal").fit().zgrid,
        lambda: disk_fitter.fit(x, y, z),
    ], args.repeats)

    result = {
        "points": int(x.size), "grid": [args.size, args.size], "backend": fitter.backend,
        "ours_s": round(ours_s, 4), "pygridfit_s": round(ref_s, 4),
        "speedup": round(ref_s / ours_s, 2),
        "max_rel_diff": float(np.abs(ours - ref).max() / zrange),
        "ours_setup_s": round(setup_s, 4), "ours_first_fit_s": round(first_s, 4),
        "ours_disk_active_s": round(disk_s, 4), "disk_unknowns": int(disk.sum()),
        "speedup_disk_active": round(ref_s / disk_s, 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
