"""Launchers that run a campaign's cells elsewhere than this process: K processes on this
machine, or Ray tasks on a cluster.

Stage: campaign execution. A launcher is handed a picklable ``task(settings, cell,
eta_cells) -> (cell, status, message)`` and the campaign's settings; it knows nothing of
training (:mod:`fer3d.campaign.run` hands it ``cell_task``). It returns the messages of the
cells whose status is ``"diverged"``.

- ``--parallel-cells K`` spreads cells over K spawned processes (several small cells share
  a GPU or the cores).
- ``--executor ray``: each cell is a Ray task with ``--gpus-per-cell`` (fractional: 0.25
  puts four cells on a GPU), submitted to ``--ray-address`` or to a local instance started
  here. Ray retries a task whose worker died; the claim of the dead attempt is taken over.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from fer3d.errors import Fer3dError
from fer3d_data.clibase import require

Task = Callable[[dict, int, int], tuple[int, str, str]]


def _diverged(results) -> list[str]:
    return [msg for _, status, msg in results if status == "diverged"]


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def run_processes(task: Task, settings: dict, cells: list[int], k: int) -> list[str]:
    """``cells`` over ``k`` spawned processes sharing this process's cores."""
    import torch

    k = min(k, max(1, len(cells)))
    threads = max(1, torch.get_num_threads() // k)  # the cores this process was given
    with ProcessPoolExecutor(k, mp_context=get_context("spawn"), initializer=_threads,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(task, settings, c, math.ceil(len(cells) / k)) for c in cells]
        return _diverged(f.result() for f in as_completed(futures))


def _check_address(address: str) -> None:
    """A clear error before training when a Ray head does not answer."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise Fer3dError(f"--ray-address {address}: no Ray head answers there ({exc}); "
                         "start one with `ray start --head` or omit --ray-address "
                         "for a local instance") from None


def run_ray(task: Task, settings: dict, cells: list[int], *, address: str | None,
            gpus_per_cell: float, use_gpu: bool) -> list[str]:
    """``cells`` as Ray tasks on the cluster at ``address`` (None: a local instance)."""
    require("ray", "ray", "--executor ray")
    import ray

    started = not ray.is_initialized()
    if started:
        if address and address != "auto":
            _check_address(address)
        ray.init(address=address, include_dashboard=False)
    try:
        has_gpu = use_gpu and ray.cluster_resources().get("GPU", 0) > 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_cell if has_gpu else 0,
                            max_retries=3)(task)
        return _diverged(ray.get([remote.remote(settings, c, 1 if i == 0 else 0)
                                  for i, c in enumerate(cells)]))
    finally:
        if started:
            ray.shutdown()
