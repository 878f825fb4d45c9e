"""The parallel driver: a list of scans -> one shard, with progress and a summary.

Stage: preprocessing driver. :func:`run_prep` runs :func:`fer3d_data.prep.process.process_scan`
over many scans in worker processes while the parent alone writes the shard
(:class:`fer3d_data.shards.ShardWriter`). A scan that fails becomes an ``/errors`` row and
the run goes on; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..datasets.records import ScanRecord
from ..errors import Fer3dDataError, RawFormatError, ScanError
from ..shards import ShardWriter
from .config import PrepConfig
from .process import process_scan

# Error-row steps beyond the preprocessing steps of docs/shards.md.
STEP_UNEXPECTED = "process"  # an exception no step claimed
STEP_WORKER = "worker"  # the worker process died (segfault, out of memory)
STEP_TIMEOUT = "timeout"  # the scan ran past PrepConfig.scan_timeout; its worker was killed
_POLL_S = 0.2  # how often a parent waiting on a worker looks at its SIGINT latch
_PR_SET_PDEATHSIG = 1


class _ScanTimeout(BaseException):
    """Raised by SIGALRM in a scan that runs in this process past its time limit (a
    BaseException: the per-scan ``except Exception`` must not turn it into a row)."""


class SigintLatch:
    """Parent-only SIGINT kept as a flag and raised at safe points.

    A KeyboardInterrupt raised at an arbitrary bytecode can land in a weakref or atexit
    callback of the process pool, where Python prints and drops it (issue 9: the run then
    finished with exit 0). Here the handler only records it, unless ``raise_now`` (a scan
    running in this process: no pool callbacks to hit); :meth:`check` raises it.
    """

    def __init__(self):
        self.hit = False
        self.raise_now = False

    def __call__(self, signum, frame):
        self.hit = True
        if self.raise_now:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = signal.signal(signal.SIGINT, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, old)

@dataclass
class PrepSummary:
    """What :func:`run_prep` did. ``exit_code`` is what the CLI returns."""

    out_path: Path
    total: int
    written: int
    skipped: int
    failed_by_step: dict[str, int]
    seconds: float
    n_samples: int
    strict: bool = False
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failed_by_step.values())

    @property
    def exit_code(self) -> int:
        """0 on success; 1 when the shard holds no sample, or with ``strict`` and any failure."""
        if self.n_samples == 0 or (self.strict and self.failed):
            return 1
        return 0

    def line(self) -> str:
        """One-line summary: ``written 710, skipped 0, failed 10 (gridfit 7, read 3) -> out.h5 in 1m02s``."""
        steps = ", ".join(f"{k} {v}" for k, v in sorted(self.failed_by_step.items(), key=lambda kv: -kv[1]))
        failed = f"failed {self.failed}" + (f" ({steps})" if steps else "")
        m, s = divmod(int(round(self.seconds)), 60)
        return (f"written {self.written}, skipped {self.skipped}, {failed} -> {self.out_path} "
                f"({self.n_samples} samples) in {m}m{s:02d}s")


def source_of(record: ScanRecord, raw_root: str | os.PathLike | None) -> str:
    """The ``source`` column of a scan: its mesh/grid path relative to the raw root."""
    if record.mesh is None:  # a missing mesh still needs a stable key for its error row
        return f"{record.subject}/{record.scan_id}"
    path = Path(record.mesh)
    if raw_root is not None:
        with contextlib.suppress(ValueError):
            return path.resolve().relative_to(Path(raw_root).resolve()).as_posix()
    return path.as_posix()


def _describe_failure(exc: BaseException) -> tuple[str, str]:
    """(step, message) of an exception raised by process_scan."""
    if isinstance(exc, ScanError):
        return exc.step, exc.message
    if isinstance(exc, RawFormatError):
        return "read", str(exc)
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return STEP_UNEXPECTED, f"{type(exc).__name__}: {exc}{where}"


def _process_one(record: ScanRecord, cfg: PrepConfig) -> tuple:
    """Run process_scan and return ``("ok", sample)`` or ``("error", step, message)``.

    Top-level so spawn-started workers can unpickle it; exceptions become plain tuples so
    an exception type that does not pickle cannot break the pool.
    """
    try:
        return ("ok", process_scan(record, cfg))
    except Exception as exc:  # noqa: BLE001 - every failure of one scan becomes an error row
        return ("error", *_describe_failure(exc))


_STARTS = None  # in a worker: the queue on which it reports (scan_id, wall time) at each start


def _worker_init(parent: int, starts) -> None:
    # Ctrl-C goes to the whole process group: only the parent handles it, so it can flush.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _STARTS
    _STARTS = starts
    _die_with(parent)


def _in_worker(fn, record: ScanRecord, cfg: PrepConfig):
    """Run ``fn`` after telling the parent the scan started: its time limit counts from here,
    not from the submit (a worker's start-up takes seconds)."""
    _STARTS.put((record.scan_id, time.time()))
    return fn(record, cfg)


def _die_with(parent: int) -> None:
    """End this worker when ``parent`` dies (kill -9 included): the kernel's parent-death
    signal on Linux, and everywhere a watchdog thread that sees the parent pid change."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # died before the signal was armed
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="fer3d-parent-watchdog", daemon=True).start()


@contextlib.contextmanager
def _one_thread_per_worker():
    """Workers are processes: keep BLAS/OpenMP in each to one thread (no oversubscription)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _alarm(seconds: float):
    """Raise :class:`_ScanTimeout` in this (main) thread after ``seconds``; no-op elsewhere."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise _ScanTimeout

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _timeout_error(cfg: PrepConfig) -> tuple:
    return ("error", STEP_TIMEOUT, f"scan took longer than scan_timeout = {cfg.scan_timeout:g} s; "
                                   "stopped (raise scan_timeout to allow more)")


def _results_serial(records: Sequence[ScanRecord], cfg: PrepConfig, latch: SigintLatch):
    """(record, result) in order, in this process (workers <= 1); SIGALRM bounds each scan."""
    for record in records:
        latch.raise_now = True
        try:
            with _alarm(cfg.scan_timeout):
                result = _process_one(record, cfg)
        except _ScanTimeout:
            result = _timeout_error(cfg)
        finally:
            latch.raise_now = False
        latch.check()
        yield record, result


def _kill(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's workers now (a stuck scan holds one; the executor has no call for it)."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            proc.kill()
    pool.shutdown(wait=True, cancel_futures=True)


class _Starts:
    """Wall times at which workers started each scan (drained from their queue)."""

    def __init__(self, ctx):
        self.queue = ctx.SimpleQueue()
        self.at: dict[str, float] = {}

    def of(self, scan_id: str) -> float | None:
        while not self.queue.empty():
            sid, t = self.queue.get()
            self.at[sid] = t
        return self.at.get(scan_id)

    def forget(self, records) -> None:
        """Scans going back to the queue: their clocks restart when a worker takes them."""
        self.of("")
        for r in records:
            self.at.pop(r.scan_id, None)


def _wait(fut, record: ScanRecord, starts: _Starts, seconds: float, latch: SigintLatch):
    """The future's result, polling so a SIGINT is seen; TimeoutError ``seconds`` after a
    worker started the scan."""
    while True:
        latch.check()
        started = starts.of(record.scan_id)
        if started is not None and time.time() - started > seconds:
            raise TimeoutError
        with contextlib.suppress(TimeoutError):
            return fut.result(timeout=_POLL_S)


def _results_parallel(records: Sequence[ScanRecord], cfg: PrepConfig, workers: int, fn=None,
                      latch: SigintLatch | None = None):
    """(record, result) in input order from a spawn-started process pool.

    At most ``2 * workers`` scans are in flight, so memory stays flat however many scans.
    When a worker dies the pool breaks for every scan in flight: those are retried one at a
    time in a fresh pool, and the scan that kills its worker alone gets a ``worker`` error.
    A scan past ``cfg.scan_timeout`` gets a ``timeout`` error: the pool is killed and the
    other scans in flight start again in a fresh one.
    """
    fn = fn or _process_one  # tests pass a top-level stand-in
    latch = latch or SigintLatch()
    ctx = multiprocessing.get_context("spawn")
    starts = _Starts(ctx)
    todo = deque(records)
    suspects: deque[ScanRecord] = deque()
    limit = 2 * workers
    pool = None
    try:
        while todo or suspects:
            if pool is None:
                with _one_thread_per_worker():
                    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                               initargs=(os.getpid(), starts.queue))
            if suspects:  # isolation mode: one scan at a time
                record = suspects.popleft()
                try:
                    fut = pool.submit(_in_worker, fn, record, cfg)
                    yield record, _wait(fut, record, starts, cfg.scan_timeout, latch)
                except BrokenProcessPool:
                    pool.shutdown(wait=True)
                    pool = None
                    yield record, ("error", STEP_WORKER, "worker process died while processing this scan")
                except TimeoutError:
                    _kill(pool)
                    pool = None
                    yield record, _timeout_error(cfg)
                continue
            inflight: deque = deque()
            try:
                while todo or inflight:
                    while todo and len(inflight) < limit:
                        record = todo.popleft()
                        inflight.append((record, pool.submit(_in_worker, fn, record, cfg)))
                    record, fut = inflight[0]
                    result = _wait(fut, record, starts, cfg.scan_timeout, latch)
                    inflight.popleft()
                    yield record, result
            except BrokenProcessPool:
                suspects.extend(r for r, _ in inflight)
                pool.shutdown(wait=True)
                pool = None
            except TimeoutError:
                _kill(pool)
                pool = None
                inflight.popleft()
                starts.forget(r for r, _ in inflight)
                todo.extendleft(reversed([r for r, _ in inflight]))
                yield record, _timeout_error(cfg)
    finally:
        if pool is not None and latch.hit:  # Ctrl-C: do not wait for the scans in flight
            _kill(pool)
        elif pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def run_prep(records: Iterable[ScanRecord], out_path: str | os.PathLike, cfg: PrepConfig, *,
             workers: int | None = None, strict: bool = False, overwrite: bool = False,
             progress: bool = True, raw_root: str | os.PathLike | None = None) -> PrepSummary:
    """Preprocess ``records`` into the shard ``out_path`` (resumable, see docs/shards.md).

    workers   processes; None = every core; 0 or 1 = in this process (no pool).
    strict    any failed scan makes ``exit_code`` 1 (the shard is still written).
    overwrite start afresh even if ``out_path`` (or its ``.tmp``) holds another config.
    raw_root  the raw tree's root; ``source`` columns are relative to it.

    Samples whose ``sample_id`` is already in the shard are skipped. On KeyboardInterrupt
    the ``.tmp`` file is flushed and closed (a rerun resumes) and the interrupt re-raised.
    """
    records = list(records)
    t0 = time.monotonic()
    scheme, names = cfg.landmark_scheme()
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    failed: Counter = Counter()
    failures: list[tuple[str, str, str]] = []
    written = 0
    writer = ShardWriter(out_path, dataset=cfg.dataset, cfg=cfg, image_size=cfg.image_size,
                         landmark_scheme=scheme, landmark_names=names, overwrite=overwrite)
    done = writer.existing_ids()
    todo = [r for r in records if r.scan_id not in done]
    skipped = len(records) - len(todo)
    workers = max(0, min(int(workers), len(todo)))
    bar = _progress_bar(len(todo), progress)
    latch = SigintLatch()
    results = (_results_serial(todo, cfg, latch) if workers <= 1
               else _results_parallel(todo, cfg, workers, latch=latch))
    try:
        # closing() shuts the pool down at once if writing fails or Ctrl-C arrives
        with latch.installed(), contextlib.closing(results):
            for record, result in results:
                source = source_of(record, raw_root)
                if result[0] == "ok":
                    try:
                        writer.append(dataclasses.replace(result[1], source=source))
                        written += 1
                    except Fer3dDataError as e:  # the writer's validation: shapes, codes, id widths
                        result = ("error", "sample", str(e))
                if result[0] == "error":
                    _, step_name, message = result
                    writer.add_error(source, step_name, message)
                    failed[step_name] += 1
                    failures.append((source, step_name, message))
                bar.update(1)
                if failed:
                    bar.set_postfix(failed=sum(failed.values()), refresh=False)
                latch.check()
    except BaseException:
        bar.close()
        writer.close(complete=False)
        raise
    bar.close()
    n_samples = len(writer)
    writer.close(complete=True)
    return PrepSummary(out_path=Path(out_path), total=len(records), written=written, skipped=skipped,
                       failed_by_step=dict(failed), seconds=time.monotonic() - t0,
                       n_samples=n_samples, strict=strict, failures=failures)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="scan", desc="prep", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1,
                mininterval=0.1 if sys.stderr.isatty() else 30.0)  # logs: a line per 30 s
