"""Scans as Ray tasks: ``fer3d-prep ... --executor ray`` over a Ray cluster.

Stage: preprocessing driver. Each scan is one Ray task running the same per-scan function
as a local worker, under the same time limit; results come back to this process in input
order and :func:`fer3d_data.prep.run_prep` writes them into the one shard, so resuming,
error rows and the summary are those of the local pool. No part files, no merge. The raw
tree must be readable at the same path on every node (a shared file system).
docs/preprocessing.md ("A cluster") says how to start it.
"""

from __future__ import annotations

import time
from collections import deque

from ..clibase import require
from .pool import ScanTimeout, SigintLatch, alarm
from .runner import STEP_UNEXPECTED, STEP_WORKER, _process_one, _timeout_error

_POLL_S = 0.2  # how often the driver looks at its SIGINT latch while waiting on a task
# A task that ignores its SIGALRM (stuck in native code) is cancelled by the driver this
# long after it became the oldest in flight: twice its limit plus the time to start a worker.
_BACKSTOP = 2.0
_BACKSTOP_S = 30.0
# Retries of a task whose worker died (a node lost); a scan that kills every worker it
# runs on ends as a "worker" error row after them.
MAX_RETRIES = 2


def scan_task(record, cfg) -> tuple:
    """One scan in a Ray worker: ``_process_one`` bounded by ``cfg.scan_timeout``."""
    try:
        with alarm(cfg.scan_timeout):
            return _process_one(record, cfg)
    except ScanTimeout:
        return _timeout_error(cfg)


def results_ray(records: list, cfg, workers: int | None, latch: SigintLatch):
    """(record, result) of every scan in input order, computed as Ray tasks.

    ``workers`` bounds the tasks in flight (memory of the results waiting here); None: twice
    the cluster's CPUs. Connects with ``ray.init()`` (RAY_ADDRESS, else a local instance)
    unless Ray is already initialised.
    """
    require("ray", "ray", "--executor ray")
    import ray

    if not ray.is_initialized():
        ray.init()
    task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(scan_task)
    window = workers or 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    todo, inflight = deque(records), deque()
    try:
        while todo or inflight:
            while todo and len(inflight) < window:
                record = todo.popleft()
                inflight.append((record, task.remote(record, cfg)))
            record, ref = inflight[0]
            result = _result(ray, ref, cfg, latch)
            inflight.popleft()
            yield record, result
    finally:
        for _, ref in inflight:  # Ctrl-C, a full disk: stop the scans in flight
            ray.cancel(ref, force=True)


def _result(ray, ref, cfg, latch: SigintLatch) -> tuple:
    """The task's result tuple; a task past the backstop, cancelled or whose worker died
    becomes an error tuple like the local pool's."""
    start = time.monotonic()
    while not ray.wait([ref], timeout=_POLL_S)[0]:
        latch.check()
        if time.monotonic() - start > _BACKSTOP * cfg.scan_timeout + _BACKSTOP_S:
            ray.cancel(ref, force=True)
            return _timeout_error(cfg)
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return _timeout_error(cfg)
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError,
            ray.exceptions.NodeDiedError) as e:
        return ("error", STEP_WORKER, f"Ray worker died while processing this scan "
                                      f"({type(e).__name__})")
    except ray.exceptions.RayError as e:
        return ("error", STEP_UNEXPECTED, f"{type(e).__name__}: {str(e).splitlines()[0]}")
