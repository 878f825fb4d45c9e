"""The parallel driver: a list of scans -> one shard, with progress and a summary.

Stage: preprocessing driver. :func:`run_prep` runs :func:`fer3d_data.prep.process.process_scan`
over many scans in worker processes while the parent alone writes the shard
(:class:`fer3d_data.shards.ShardWriter`). A scan that fails becomes an ``/errors`` row and
the run goes on; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import sys
import time
import traceback
from collections import Counter, deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..datasets import adapter
from ..datasets.records import ScanRecord
from ..errors import Fer3dDataError, RawFormatError, ScanError
from ..shards import ShardWriter, open_shard, preflight
from .config import PrepConfig
from .pool import Pool, ScanTimeout, SigintLatch, alarm
from .process import process_scan

# Error-row steps beyond the preprocessing steps of docs/shards.md.
STEP_UNEXPECTED = "process"  # an exception no step claimed
STEP_WORKER = "worker"  # the worker process died (segfault, out of memory)
STEP_TIMEOUT = "timeout"  # the scan ran past PrepConfig.scan_timeout; its worker was killed


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
    untouched: bool = False  # a finished shard already held every scan: nothing was written

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
        """One-line summary, e.g.
        ``written 710, skipped 0, failed 10 (gridfit 7, read 3) -> out.h5 in 1m02s``."""
        by_count = sorted(self.failed_by_step.items(), key=lambda kv: -kv[1])
        steps = ", ".join(f"{k} {v}" for k, v in by_count)
        failed = f"failed {self.failed}" + (f" ({steps})" if steps else "")
        m, s = divmod(int(round(self.seconds)), 60)
        done = ", already complete: left as it was" if self.untouched else ""
        return (f"written {self.written}, skipped {self.skipped}, {failed} -> {self.out_path} "
                f"({self.n_samples} samples{done}) in {m}m{s:02d}s")


def source_of(record: ScanRecord, raw_root: str | os.PathLike | None) -> str:
    """The ``source`` column of a scan: its mesh/grid path relative to the raw root."""
    if record.mesh is None:  # a missing mesh still needs a stable key for its error row
        return f"{record.subject}/{record.scan_id}"
    path = Path(record.mesh)
    if raw_root is not None:
        # RuntimeError: resolve() on a symbolic link loop (Python < 3.13)
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            return path.resolve().relative_to(Path(raw_root).resolve()).as_posix()
        with contextlib.suppress(ValueError):  # a loop has no resolved path: as written
            return path.relative_to(raw_root).as_posix()
    return path.as_posix()


def default_workers() -> int:
    """Worker processes when none are asked for: every core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


def _timeout_error(cfg: PrepConfig) -> tuple:
    return ("error", STEP_TIMEOUT, f"scan took longer than scan_timeout = {cfg.scan_timeout:g} s; "
                                   "stopped (raise scan_timeout to allow more)")


def _results_serial(records: Sequence[ScanRecord], cfg: PrepConfig, latch: SigintLatch):
    """(record, result) in order, in this process (workers <= 1); SIGALRM bounds each scan."""
    for record in records:
        latch.raise_now = True
        try:
            with alarm(cfg.scan_timeout):
                result = _process_one(record, cfg)
        except ScanTimeout:
            result = _timeout_error(cfg)
        finally:
            latch.raise_now = False
        latch.check()
        yield record, result


def _isolated(pool: Pool, record: ScanRecord) -> tuple[tuple, bool]:
    """One suspect scan alone in the pool: (its result, whether the pool is still usable)."""
    try:
        return pool.result(pool.submit(record), record), True
    except BrokenProcessPool:
        pool.close()
        return ("error", STEP_WORKER, "worker process died while processing this scan"), False
    except TimeoutError:
        pool.close(kill=True)
        return _timeout_error(pool.cfg), False


def _results_parallel(records: Sequence[ScanRecord], cfg: PrepConfig, workers: int, fn=None,
                      latch: SigintLatch | None = None):
    """(record, result) in input order from a spawn-started process pool.

    At most ``2 * workers`` scans are in flight, so memory stays flat however many scans.
    When a worker dies the pool breaks for every scan in flight: those are retried one at a
    time in a fresh pool, and the scan that kills its worker alone gets a ``worker`` error.
    A scan past ``cfg.scan_timeout`` gets a ``timeout`` error: the pool is killed and the
    other scans in flight start again in a fresh one.
    """
    ctx, latch = multiprocessing.get_context("spawn"), latch or SigintLatch()
    todo, suspects = deque(records), deque()
    pool = None
    try:
        while todo or suspects:
            # tests pass a top-level stand-in for _process_one
            pool = pool or Pool(ctx, workers, fn or _process_one, cfg, latch)
            if suspects:  # isolation mode: one scan at a time
                record = suspects.popleft()
                result, alive = _isolated(pool, record)
                pool = pool if alive else None
                yield record, result
                continue
            inflight: deque = deque()
            try:
                while todo or inflight:
                    while todo and len(inflight) < 2 * workers:
                        record = todo.popleft()
                        inflight.append((record, pool.submit(record)))
                    record, fut = inflight[0]
                    result = pool.result(fut, record)
                    inflight.popleft()
                    yield record, result
            except BrokenProcessPool:
                suspects.extend(r for r, _ in inflight)
                pool.close()
                pool = None
            except TimeoutError:
                pool.close(kill=True)
                pool = None
                inflight.popleft()
                todo.extendleft(reversed([r for r, _ in inflight]))
                yield record, _timeout_error(cfg)
    finally:
        if pool is not None:
            pool.close(kill=latch.hit)  # Ctrl-C: do not wait for the scans in flight


def scan_results(records: Sequence[ScanRecord], cfg: PrepConfig, workers: int = 0,
                 latch: SigintLatch | None = None):
    """(record, ``("ok", Sample)`` or ``("error", step, message)``) per record, in order: in
    this process (``workers`` <= 1) or a spawn-started pool, each scan bounded by
    ``cfg.scan_timeout`` and a worker's crash isolated to its scan, as :func:`run_prep`'s
    local executor (fer3d-predict's raw scans)."""
    return _results(list(records), cfg, workers, "local", latch or SigintLatch())


def run_prep(records: Iterable[ScanRecord], out_path: str | os.PathLike, cfg: PrepConfig, *,
             workers: int | None = None, strict: bool = False, overwrite: bool = False,
             progress: bool = True, raw_root: str | os.PathLike | None = None,
             label_names: Sequence[str] | None = None, executor: str = "local") -> PrepSummary:
    """Preprocess ``records`` into the shard ``out_path`` (resumable, see docs/shards.md).

    workers     processes; None = every core; 0 or 1 = in this process (no pool).
    strict      any failed scan makes ``exit_code`` 1 (the shard is still written).
    overwrite   start afresh even if ``out_path`` (or its ``.tmp``) holds another config.
    raw_root    the raw tree's root; ``source`` columns are relative to it.
    label_names the shard's classes in code order; None: the dataset's fixed names
                (:meth:`fer3d_data.datasets.Adapter.labels` of ``records``).
    executor    "local" (this machine's process pool) or "ray" (tasks on the Ray cluster
                ``ray.init`` reaches; the results come back here, where the one shard is
                written); ``workers`` then bounds nothing but the tasks in flight.

    Samples whose ``sample_id`` is already in the shard are skipped; a finished shard that
    holds every record is left untouched (``untouched``). A scan running past
    ``cfg.scan_timeout`` becomes a ``timeout`` error row. On KeyboardInterrupt (SIGINT to
    the parent alone included) or a full disk (``OSError(ENOSPC)`` naming the ``.tmp``) the
    ``.tmp`` file is closed and kept (a rerun resumes) and the exception re-raised.
    """
    records = list(records)
    t0 = time.monotonic()
    scheme = cfg.scheme()
    if label_names is None:
        label_names = adapter(cfg.dataset).labels(records)
    if not overwrite and _holds_every_scan(out_path, cfg, records, label_names):
        with open_shard(out_path) as shard:
            n = len(shard)
        return PrepSummary(out_path=Path(out_path), total=len(records), written=0,
                           skipped=len(records), failed_by_step={},
                           seconds=time.monotonic() - t0, n_samples=n, untouched=True)
    writer = ShardWriter(out_path, dataset=cfg.dataset, cfg=cfg, image_size=cfg.image_size,
                         landmark_scheme=scheme.name, landmark_names=scheme.names,
                         label_names=label_names, overwrite=overwrite)
    done = writer.existing_ids()
    todo = [r for r in records if r.scan_id not in done]
    skipped = len(records) - len(todo)
    latch = SigintLatch()
    results = _results(todo, cfg, workers, executor, latch)
    bar = _progress_bar(len(todo), progress)
    try:
        # closing() shuts the pool down at once if writing fails or Ctrl-C arrives
        with latch.installed(), contextlib.closing(results):
            written, failed, failures = _write_results(results, writer, bar, latch, raw_root)
    except BaseException:
        bar.close()
        writer.close(complete=False)
        raise
    bar.close()
    n_samples = len(writer)
    writer.close(complete=True)
    return PrepSummary(out_path=Path(out_path), total=len(records), written=written,
                       skipped=skipped,
                       failed_by_step=dict(failed), seconds=time.monotonic() - t0,
                       n_samples=n_samples, strict=strict, failures=failures)


def _holds_every_scan(out_path, cfg: PrepConfig, records: list[ScanRecord],
                      label_names: Sequence[str]) -> bool:
    """Whether ``out_path`` is a finished shard of ``cfg`` (no ``.tmp`` to resume) whose
    samples include every record: a rerun then leaves it untouched."""
    if preflight(out_path, config=cfg, landmark_scheme=cfg.scheme().name,
                 label_names=label_names) != Path(out_path):
        return False
    with open_shard(out_path) as shard:
        done = set(shard.index["sample_id"].tolist())
    return all(r.scan_id in done for r in records)


def _results(todo: list[ScanRecord], cfg: PrepConfig, workers: int | None, executor: str,
             latch: SigintLatch):
    """(record, result) of every scan of ``todo``, from the executor asked for."""
    if executor == "ray":
        from .ray_executor import results_ray

        return results_ray(todo, cfg, workers, latch)
    if executor != "local":
        raise Fer3dDataError(f"unknown executor {executor!r}; use local or ray")
    workers = max(0, min(int(default_workers() if workers is None else workers), len(todo)))
    return (_results_serial(todo, cfg, latch) if workers <= 1
            else _results_parallel(todo, cfg, workers, latch=latch))


def _write_results(results, writer: ShardWriter, bar, latch: SigintLatch,
                   raw_root: str | os.PathLike | None) -> tuple[int, Counter, list]:
    """Append each ok result to ``writer`` and record each error: (written, failed, failures)."""
    failed: Counter = Counter()
    failures: list[tuple[str, str, str]] = []
    written = 0
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
    return written, failed, failures


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="scan", desc="prep", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1,
                mininterval=0.1 if sys.stderr.isatty() else 30.0)  # logs: a line per 30 s
