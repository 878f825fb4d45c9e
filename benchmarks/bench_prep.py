"""Benchmark: the whole preprocessing chain (process_scan, run_prep) on database-size scans.

Synthetic trees at the default synth sizes: BU-3DFE meshes of ~8,000 vertices with a
512x512 texture (the unused _F2D.bmp is kept tiny), Bosphorus range grids of 230x190 at
0.76 mm with a 1380x1140 texture. Measures, at S = --size:

- seconds per scan of process_scan in this process, one core, after a warm-up scan
  (the per-process GridFitter factorisation, dlib/open3d imports): median over --scans;
- scans/s of run_prep with --workers processes (default: every core) over a few dozen
  scans per dataset, wall time including pool start-up and writing the shard; and the
  steady state without start-up: a run over ``workers`` scans gives the start-up (spawn,
  imports, each worker's first scan), steady = (N - workers) / (t_N - t_workers);
- peak RSS per worker: psutil polls every worker's RSS (10 Hz) while run_prep runs and
  keeps the maximum; resource.getrusage(RUSAGE_CHILDREN).ru_maxrss (the largest
  terminated child) is reported beside it as a cross-check.

Prints one JSON object; ``--profile`` also prints the top functions of a cProfile of the
single-process scans to stderr.

    .venv/bin/python benchmarks/bench_prep.py [--size 224] [--scans 8] [--workers N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from fer3d_data import synth
from fer3d_data.datasets import ADAPTERS
from fer3d_data.prep import PrepConfig, process_scan, run_prep

TARGET_S_PER_SCAN = 0.3
TARGET_RSS_MIB = 1024


def make_trees(root: Path, bu_subjects: int, bs_subjects: int) -> dict[str, list]:
    """Default-size synthetic trees; their scan records by dataset."""
    synth.make_bu3dfe(root / "bu3dfe", subjects=bu_subjects, f2d_size=8)  # _F2D is never read
    synth.make_bosphorus(root / "bosphorus", subjects=bs_subjects)
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
                   help="timed scans per dataset (after one warm-up)")
    p.add_argument("--bu-subjects", type=int, default=1, help="25 scans each")
    p.add_argument("--bs-subjects", type=int, default=2, help="7 scans each")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--profile", action="store_true", help="cProfile the timed scans (stderr)")
    p.add_argument("--tmp", type=Path, default=None, help="work folder (default: a temporary one)")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        trees = make_trees(root / "raw", args.bu_subjects, args.bs_subjects)
        synth_s = time.perf_counter() - t
        profiler = cProfile.Profile() if args.profile else None
        per_scan = {name: seconds_per_scan(records, PrepConfig(dataset=name, image_size=args.size),
                                           args.scans, profiler)
                    for name, records in trees.items()}
        runs, startup = {}, {}
        for name, records in trees.items():
            cfg = PrepConfig(dataset=name, image_size=args.size)
            startup[name], _ = parallel_run(records[:args.workers], cfg,
                                            root / f"{name}_startup.h5", args.workers)
            runs[name] = parallel_run(records, cfg, root / f"{name}.h5", args.workers)
    children_maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    worker_peaks = [rss for _, peaks in runs.values() for rss in peaks.values()]
    n_total = sum(len(r) for r in trees.values())
    s_total = sum(s for s, _ in runs.values())
    result = {
        "bu3dfe_s_per_scan": round(statistics.median(per_scan["bu3dfe"]), 4),
        "bosphorus_s_per_scan": round(statistics.median(per_scan["bosphorus"]), 4),
        "scans_per_s_all_cores": round(n_total / s_total, 3),
        "peak_rss_mib_per_worker": round(max(worker_peaks) / 2**20, 1) if worker_peaks else None,
        "children_maxrss_mib": round(children_maxrss_kib / 1024, 1),
        "parent_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "scans_per_s_all_cores_steady": round((n_total - len(trees) * args.workers)
                                              / (s_total - sum(startup.values())), 3),
        "pool_startup_s": {name: round(t, 2) for name, t in startup.items()},
        "bu3dfe_scans_per_s_all_cores": round(len(trees["bu3dfe"]) / runs["bu3dfe"][0], 3),
        "bosphorus_scans_per_s_all_cores": round(len(trees["bosphorus"]) / runs["bosphorus"][0], 3),
        **{f"{name}_s_per_scan_range": [round(min(t), 4), round(max(t), 4)]
           for name, t in per_scan.items()},
        "parallel_scans": {name: len(records) for name, records in trees.items()},
        "workers": args.workers,
        "size": args.size,
        "timed_scans_per_dataset": args.scans,
        "rss_method": ("psutil RSS of every child polled at 10 Hz during run_prep, max over workers"
                       if worker_peaks else "psutil missing: see children_maxrss_mib"),
        "synth_seconds": round(synth_s, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "targets": {"s_per_scan_per_core": TARGET_S_PER_SCAN,
                    "peak_rss_mib_per_worker": TARGET_RSS_MIB},
    }
    print(json.dumps(result))
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue(), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
