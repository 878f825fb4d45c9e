"""Process control of a prep run: the worker pool, per-scan time limits, worker lifetime, SIGINT.

Stage: preprocessing driver. :mod:`fer3d_data.prep.runner` drives scans through a
:class:`Pool`; everything here is about processes and signals, nothing about scans'
content. docs/reliability.md says what it guarantees and how it is tested.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from concurrent import futures
from concurrent.futures import ProcessPoolExecutor

_POLL_S = 0.2  # how often a parent waiting on a worker looks at its SIGINT latch
_PR_SET_PDEATHSIG = 1


class ScanTimeout(BaseException):
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

_STARTS = None  # in a worker: the queue on which it reports (scan_id, wall time) at each start


def _worker_init(parent: int, starts) -> None:
    """Each worker at start: ignore SIGINT (Ctrl-C goes to the whole process group; only the
    parent handles it, so it can flush), keep the start queue, die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _STARTS
    _STARTS = starts
    _die_with(parent)


def _in_worker(fn, record, cfg):
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
def alarm(seconds: float):
    """Raise :class:`ScanTimeout` in this (main) thread after ``seconds``; no-op elsewhere."""
    if (threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer")):
        yield
        return

    def expire(signum, frame):
        raise ScanTimeout

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class _Starts:
    """Wall times at which workers started each scan, drained from the queue they put them on."""

    def __init__(self, ctx):
        self.queue = ctx.SimpleQueue()
        self.at: dict[str, float] = {}

    def of(self, scan_id: str) -> float | None:
        while not self.queue.empty():
            sid, t = self.queue.get()
            self.at[sid] = t
        return self.at.get(scan_id)


class Pool:
    """A spawn-started process pool and the queue on which its workers report each scan's
    start (the time limit counts from there). Replaced whole after a crash or a kill: a
    worker killed inside ``put`` would leave the queue locked."""

    def __init__(self, ctx, workers: int, fn, cfg, latch: SigintLatch):
        self.fn, self.cfg, self.latch = fn, cfg, latch
        self.starts = _Starts(ctx)
        with _one_thread_per_worker():
            self.executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                                initargs=(os.getpid(), self.starts.queue))

    def submit(self, record):
        return self.executor.submit(_in_worker, self.fn, record, self.cfg)

    def result(self, fut, record):
        """The scan's result, polling so a SIGINT is seen; TimeoutError ``scan_timeout``
        seconds after a worker started it; BrokenProcessPool when a worker died."""
        while True:
            self.latch.check()
            started = self.starts.of(record.scan_id)
            if started is not None and time.time() - started > self.cfg.scan_timeout:
                raise TimeoutError
            with contextlib.suppress(futures.TimeoutError):  # the builtin one only from 3.11
                return fut.result(timeout=_POLL_S)

    def close(self, kill: bool = False) -> None:
        """Shut down; ``kill``: now, whatever the workers are doing (the executor has no call
        to stop one stuck scan, so its processes are killed)."""
        if kill:
            for proc in list((getattr(self.executor, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    proc.kill()
        self.executor.shutdown(wait=True, cancel_futures=True)
