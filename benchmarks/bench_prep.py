"""Benchmark: the whole preprocessing chain (process_scan, run_prep) on database-size scans.

Stage: benchmarks (docs/performance.md). Synthetic trees at the default synth sizes:
BU-3DFE meshes of ~8,000 vertices with a 512x512 texture (the unused _F2D.bmp is kept
tiny), Bosphorus range grids of 230x190 at 0.76 mm with a 1380x1140 texture. Measures, at
S = --size, in ``--rounds`` rounds that each run every measurement once in turn (ABCABC...:
the one-core reference and the parallel runs see the same load):

- seconds per scan of process_scan in this process, one core, after a warm-up scan
  (the per-process GridFitter factorisation, dlib/open3d imports): the steady state, median
  over --scans per round and every round;
- scans/s of run_prep with --workers processes (default: every core) over a few dozen
  scans per dataset, wall time including pool start-up and writing the shard; and the
  steady state without start-up: a run over ``workers`` scans gives the start-up (spawn,
  imports, each worker's first scan), steady = (N - workers) / (t_N - t_workers) from the
  runs of one round; ``parallel_speedup_steady`` divides it by the one-core reference rate
  of the same rounds (ideal: ``workers``);
- peak RSS per worker: psutil polls every worker's RSS (10 Hz) while run_prep runs and
  keeps the maximum; resource.getrusage(RUSAGE_CHILDREN).ru_maxrss (the largest
  terminated child) is reported beside it as a cross-check.

Prints one JSON object; ``--profile`` also prints the top functions of a cProfile of the
single-process scans to stderr; ``--smoke`` runs tiny trees at S = 32 (does it run).

    .venv/bin/python benchmarks/bench_prep.py [--size 224] [--scans 8] [--workers N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _emit import emit

from fer3d_data import synth
from fer3d_data.datasets import ADAPTERS
from fer3d_data.prep import PrepConfig, process_scan, run_prep

TARGET_S_PER_SCAN = 0.3
TARGET_RSS_MIB = 1024
# --smoke: tiny scans (BU-3DFE anger 1-4, three Bosphorus emotions), one round on 2 workers
SMOKE = {"size": 32, "scans": 1, "rounds": 1, "workers": 2, "bu_subjects": 1, "bs_subjects": 1}
SMOKE_SYNTH = {"bu3dfe": {"vertices": 2500, "texture_size": 64, "expressions": ["anger"]},
               "bosphorus": {"grid": (115, 95), "texture_scale": 1.0,
                             "expressions": ["anger", "fear", "happiness"]}}


def make_trees(root: Path, bu_subjects: int, bs_subjects: int,
               smoke: bool = False) -> dict[str, list]:
    """Default-size (or ``smoke``: tiny) synthetic trees; their scan records by dataset."""
    sizes = SMOKE_SYNTH if smoke else {"bu3dfe": {}, "bosphorus": {}}
    synth.make_bu3dfe(root / "bu3dfe", subjects=bu_subjects, f2d_size=8,  # _F2D is never read
                      **sizes["bu3dfe"])
    synth.make_bosphorus(root / "bosphorus", subjects=bs_subjects, **sizes["bosphorus"])
    return {name: ADAPTERS[name].walk(root / name) for name in ("bu3dfe", "bosphorus")}


def seconds_per_scan(records: list, cfg: PrepConfig, n: int,
                     profiler: cProfile.Profile | None) -> list[float]:
    """process_scan times (s) of ``n`` scans after one warm-up scan, in this process."""
    process_scan(records[0], cfg)
    times = []
    for record in records[1:n + 1]:
        if profiler is not None:
            profiler.enable()
        t = time.perf_counter()
        process_scan(record, cfg)
        times.append(time.perf_counter() - t)
        if profiler is not None:
            profiler.disable()
    return times


class WorkerRss:
    """Poll the RSS of this process's children (psutil) until stopped; max per pid."""

    def __init__(self, interval: float = 0.1):
        import psutil

        self._me, self._interval = psutil.Process(), interval
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for child in self._me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except psutil.Error:
                    continue
                self.peak[child.pid] = max(self.peak.get(child.pid, 0), rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> "WorkerRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def parallel_run(records: list, cfg: PrepConfig, out: Path,
                 workers: int) -> tuple[float, dict[int, int]]:
    """Wall seconds of run_prep over ``records`` with ``workers`` processes, and the peak
    RSS (bytes) of each child process (empty without psutil)."""
    try:
        poller = WorkerRss()
    except ImportError:
        poller = None
    t = time.perf_counter()
    if poller is None:
        summary = run_prep(records, out, cfg, workers=workers, progress=False, overwrite=True)
    else:
        with poller:
            summary = run_prep(records, out, cfg, workers=workers, progress=False, overwrite=True)
    seconds = time.perf_counter() - t
    if summary.written != len(records):
        raise RuntimeError(f"run_prep wrote {summary.written} of {len(records)} scans: "
                           f"{summary.failures[:3]}")
    return seconds, ({} if poller is None else poller.peak)


def parse_args(argv=None) -> argparse.Namespace:
    """The benchmark's command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--scans", type=int, default=8,
                   help="timed scans per dataset and round (after one warm-up)")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds of every measurement in turn (same load for each)")
    p.add_argument("--bu-subjects", type=int, default=1, help="25 scans each")
    p.add_argument("--bs-subjects", type=int, default=2, help="7 scans each")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--profile", action="store_true", help="cProfile the timed scans (stderr)")
    p.add_argument("--tmp", type=Path, default=None, help="work folder (default: a temporary one)")
    p.add_argument("--smoke", action="store_true", help=f"tiny trees: {SMOKE}")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    return args


def one_round(trees: dict, args, root: Path, profiler) -> dict:
    """Every measurement once, in turn: per dataset the one-core scans, then run_prep over
    ``workers`` scans (start-up) and over all of them. Seconds and peak RSS per worker."""
    out = {"per_scan": {}, "startup": {}, "full": {}, "peaks": []}
    for name, records in trees.items():
        cfg = PrepConfig(dataset=name, image_size=args.size)
        out["per_scan"][name] = seconds_per_scan(records, cfg, args.scans, profiler)
        out["startup"][name], _ = parallel_run(records[:args.workers], cfg,
                                               root / f"{name}_startup.h5", args.workers)
        out["full"][name], peaks = parallel_run(records, cfg, root / f"{name}.h5", args.workers)
        out["peaks"] += list(peaks.values())
    return out


def summarise(rounds: list[dict], trees: dict, args) -> dict:
    """The JSON figures of every round's measurements (see the module docstring)."""
    n = {name: len(records) for name, records in trees.items()}
    per_scan = {name: [t for r in rounds for t in r["per_scan"][name]] for name in trees}
    serial_s = {name: statistics.median(t) for name, t in per_scan.items()}
    full = [sum(r["full"].values()) for r in rounds]
    # a round whose full runs took no longer than its start-up runs (a few scans, a noisy
    # pool start) measured no steady state
    steady = [(sum(n.values()) - len(trees) * args.workers) / (t - sum(r["startup"].values()))
              for t, r in zip(full, rounds) if t > sum(r["startup"].values())]
    serial_sps = sum(n.values()) / sum(n[k] * serial_s[k] for k in n)
    steady_sps = statistics.median(steady) if steady else None
    peaks = [p for r in rounds for p in r["peaks"]]
    return {
        "bu3dfe_s_per_scan": round(serial_s["bu3dfe"], 4),
        "bosphorus_s_per_scan": round(serial_s["bosphorus"], 4),
        **{f"{name}_s_per_scan_range": [round(min(t), 4), round(max(t), 4)]
           for name, t in per_scan.items()},
        "scans_per_s_all_cores": round(sum(n.values()) / statistics.median(full), 3),
        "scans_per_s_all_cores_steady": steady_sps and round(steady_sps, 3),
        "scans_per_s_all_cores_steady_range": [round(x, 3) for x in (min(steady), max(steady))]
                                              if steady else None,
        "scans_per_s_one_core": round(serial_sps, 3),
        "parallel_speedup_steady": steady_sps and round(steady_sps / serial_sps, 2),
        "pool_startup_s": {name: round(statistics.median(r["startup"][name] for r in rounds), 2)
                           for name in trees},
        **{f"{name}_scans_per_s_all_cores":
           round(n[name] / statistics.median(r["full"][name] for r in rounds), 3)
           for name in trees},
        "peak_rss_mib_per_worker": round(max(peaks) / 2**20, 1) if peaks else None,
        "rss_method": ("psutil RSS of every child polled at 10 Hz during run_prep, max over workers"
                       if peaks else "psutil missing: see children_maxrss_mib"),
        "parallel_scans": n, "workers": args.workers, "size": args.size,
        "rounds": args.rounds, "timed_scans_per_dataset": args.scans,
        "targets": {"s_per_scan_per_core": TARGET_S_PER_SCAN,
                    "peak_rss_mib_per_worker": TARGET_RSS_MIB},
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        t = time.perf_counter()
        trees = make_trees(Path(tmp) / "raw", args.bu_subjects, args.bs_subjects, args.smoke)
        synth_s = time.perf_counter() - t
        rounds = [one_round(trees, args, Path(tmp), profiler) for _ in range(args.rounds)]
    result = summarise(rounds, trees, args)
    result.update({
        "children_maxrss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                     / 1024, 1),
        "parent_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "synth_seconds": round(synth_s, 1)})
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue(), file=sys.stderr)
    return emit(result, args.out)


if __name__ == "__main__":
    main()
