"""Reader throughput on database-size synthetic files: load_wrl on a BU-3DFE-size F3D mesh
(~8,000 vertices, ~15,000 polygons), the same mesh with a ``#`` comment on every line (the
VRML scan must stay linear), and load_bnt on a Bosphorus-size (230x190) range grid.

Stage: benchmarks (docs/performance.md). Each reader runs beside a reference in the same
run, in turn (ABAB..., the same load for both), after one unmeasured call of each (page
cache, imports: steady state): for a VRML file, a bare numpy reader of the same numbers
(read the file, parse every number in it as float64 in one ``np.fromstring`` call; the
numbers are found beforehand, untimed); for a ``.bnt``, reading it and viewing its bytes as
doubles. ``*_vs_reference`` is our speed over the reference's.

Prints JSON: MB/s (best of ``--repeat`` rounds), the file sizes and the machine.
Targets: wrl >= 30 MB/s, bnt >= 300 MB/s.

    .venv/bin/python benchmarks/bench_readers.py [--repeat 7] [--smoke]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np
from _emit import emit, interleaved

from fer3d_data.io import load_bnt, load_wrl
from fer3d_data.synth import (
    build_bosphorus_scan,
    build_bu3dfe_scan,
    write_bosphorus_scan,
    write_bu3dfe_scan,
)

TARGETS = {"wrl_mb_per_s": 30, "bnt_mb_per_s": 300}
_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def vrml_floor(path: Path):
    """Reference for a VRML file: read it, parse its numbers (found here) in one numpy call."""
    numbers = b" ".join(_NUMBER.findall(path.read_bytes()))
    return lambda: (path.read_bytes(), np.fromstring(numbers, sep=" "))


def bnt_floor(path: Path):
    """Reference for a .bnt file: read it and view its bytes as doubles."""
    return lambda: np.frombuffer(path.read_bytes()[:-(path.stat().st_size % 8) or None], "<f8")


def write_files(folder: str, smoke: bool) -> tuple[dict[str, Path], dict]:
    """The three files (wrl, commented wrl, bnt) and what they hold."""
    bu = build_bu3dfe_scan("F0001", "happiness", 4, texture_size=16, f2d_size=16,
                           vertices=2000 if smoke else 8000)
    wrl = write_bu3dfe_scan(bu, folder)[0]
    bs = build_bosphorus_scan("bs000", "happiness", texture_scale=0.1)
    bnt = write_bosphorus_scan(bs, folder)[0]
    commented = Path(folder) / "commented.wrl"
    commented.write_bytes(wrl.read_bytes().replace(b"\n", b"  # comment\n"))
    about = {"wrl_vertices": int(len(bu.vertices)), "wrl_polygons": int(len(bu.sizes)),
             "bnt_grid": list(bs.xyz.shape[:2])}
    return {"wrl": wrl, "wrl_commented": commented, "bnt": bnt}, about


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--smoke", action="store_true",
                        help="one round on a 2,000-vertex mesh: does it run")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    repeat = 1 if args.smoke else args.repeat
    result = {"repeat": repeat}
    with tempfile.TemporaryDirectory() as tmp:
        files, about = write_files(tmp, args.smoke)
        pairs = {"wrl": (lambda: load_wrl(files["wrl"]), vrml_floor(files["wrl"])),
                 "wrl_commented": (lambda: load_wrl(files["wrl_commented"]),
                                   vrml_floor(files["wrl_commented"])),
                 "bnt": (lambda: load_bnt(files["bnt"]), bnt_floor(files["bnt"]))}
        fns = [fn for pair in pairs.values() for fn in pair]
        interleaved(fns, 1)  # warm-up: page cache, imports
        times = [min(t) for t, _ in interleaved(fns, repeat)]
        for k, name in enumerate(pairs):
            mb = files[name].stat().st_size / 1e6
            ours, ref = times[2 * k], times[2 * k + 1]
            result.update({f"{name}_mb": round(mb, 3), f"{name}_seconds": round(ours, 5),
                           f"{name}_mb_per_s": round(mb / ours, 1),
                           f"{name}_reference_mb_per_s": round(mb / ref, 1),
                           f"{name}_vs_reference": round(ref / ours, 3)})
    result.update(about, targets=TARGETS)
    return emit(result, args.out)


if __name__ == "__main__":
    main()
