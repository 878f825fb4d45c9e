"""Launchers that run a campaign's cells elsewhere than this process: K worker processes
on this machine, or long-lived Ray actors on a cluster.

Stage: campaign execution. A launcher is handed a picklable factory ``make_worker(settings,
slot, task, eta_cells, share) -> worker`` and knows nothing of training
(:mod:`fer3d.campaign.run` hands it ``make_worker``). A worker is built once per process,
where it trains (device, samples, compiled networks), then pulls cells: ``worker.capacity``
at a time (its pack size), ``worker.run(cells) -> [(cell, status, message)]``. A cell that
fails, or whose worker dies, is recorded as failed and the others go on; the launcher
returns every cell's outcome.

- ``--parallel-cells K``: K spawned processes pull cells from one queue (each worker's GPU
  from its slot: :func:`fer3d.train.runtime.gpu_index`).
- ``--executor ray``: one actor per ``--gpus-per-cell`` share of the cluster's GPUs (0.25:
  four on a GPU), each asking for its share, submitted to ``--ray-address`` or to a local
  instance started here. A cell whose actor died is given to another actor (up to
  ``RAY_ATTEMPTS`` times; its earlier claim is taken over at once: same task id).
"""

from __future__ import annotations

import logging
import queue
import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable
from multiprocessing import get_context

from fer3d.errors import Fer3dError
from fer3d_data.clibase import require

log = logging.getLogger(__name__)

Result = tuple[int, str, str]
MakeWorker = Callable[..., object]
RAY_ATTEMPTS = 3


# --------------------------------------------------------------------------- processes

def _take(todo, n: int) -> list[int] | None:
    """Up to ``n`` cells from the queue; None once its end mark is reached."""
    first = todo.get()
    if first is None:
        todo.put(None)  # the mark stays for the other workers
        return None
    cells = [first]
    while len(cells) < n:
        try:
            nxt = todo.get(timeout=0.1)
        except queue.Empty:
            break
        if nxt is None:
            todo.put(None)  # the mark stays for the next reader
            break
        cells.append(nxt)
    return cells


def _process_main(make_worker: MakeWorker, settings: dict, slot: int, todo, done,
                  threads: int, eta_cells: int, share: float) -> None:
    """A worker process: build the worker, then train cells until the queue ends."""
    import torch

    torch.set_num_threads(threads)
    try:
        worker = make_worker(settings, slot, None, eta_cells, share)
    except Exception as exc:  # noqa: BLE001 (reported once; the other workers go on)
        done.put(("error", slot, f"worker {slot} could not start: {exc}"))
        return
    while (cells := _take(todo, worker.capacity)) is not None:
        done.put(("start", slot, cells))
        done.put(("done", slot, worker.run(cells)))


def _collect(procs: dict, done, cells: list[int]) -> list[Result]:
    """Outcomes reported by the workers until all have exited; a dead worker's cells fail."""
    results, inflight, errors = {}, {}, []
    while True:
        try:
            kind, slot, payload = done.get(timeout=1.0)
        except queue.Empty:
            if not any(p.is_alive() for p in procs.values()):
                break
            continue
        if kind == "start":
            inflight[slot] = payload
        elif kind == "done":
            inflight.pop(slot, None)
            results.update({r[0]: r for r in payload})
        else:
            errors.append(payload)
    for slot, lost in inflight.items():
        code = procs[slot].exitcode
        results.update({c: (c, "failed", f"cell {c}: its worker process died (exit code "
                                         f"{code}) while training it") for c in lost})
    why = "; ".join(errors) or "every worker process stopped"
    return [results.get(c, (c, "failed", f"cell {c}: not trained ({why})")) for c in cells]


def run_processes(make_worker: MakeWorker, settings: dict, cells: list[int], k: int, *,
                  share: float = 1.0) -> list[Result]:
    """``cells`` over ``k`` spawned worker processes sharing this process's cores."""
    import torch

    mp = get_context("spawn")
    todo, done = mp.Queue(), mp.Queue()
    for cell in [*cells, None]:
        todo.put(cell)
    threads = max(1, torch.get_num_threads() // k)  # the cores this process was given
    eta = -(-len(cells) // k)
    procs = {slot: mp.Process(target=_process_main, args=(
        make_worker, settings, slot, todo, done, threads, eta, share)) for slot in range(k)}
    for p in procs.values():
        p.start()
    try:
        return _collect(procs, done, cells)
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()  # SIGTERM: a worker releases its claims on the way out
        for p in procs.values():
            p.join(60)


# --------------------------------------------------------------------------- Ray

def _check_address(address: str) -> None:
    """A clear error before training when a Ray head does not answer."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise Fer3dError(f"--ray-address {address}: no Ray head answers there ({exc}); "
                         "start one with `ray start --head` or omit --ray-address "
                         "for a local instance") from None


class RayWorker:
    """A Ray actor around ``make_worker``: set up once on its node, then handed packs."""

    def __init__(self, make_worker: MakeWorker, settings: dict, slot: int, task: str,
                 eta_cells: int, share: float):
        self.worker = make_worker(settings, slot, task, eta_cells, share)

    def capacity(self) -> int:
        return self.worker.capacity

    def run(self, cells: list[int]) -> list[Result]:
        return self.worker.run(cells)


def _start_actors(ray, actors: list) -> tuple[dict, list[str]]:
    """{actor: capacity} of the actors that set up; the errors of the others."""
    ready, errors = {}, []
    for actor in actors:
        try:
            ready[actor] = ray.get(actor.capacity.remote())
        except Exception as exc:  # noqa: BLE001 (RayActorError/RayTaskError: its set-up failed)
            errors.append(str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc))
    return ready, errors


def _drive(ray, capacity: dict, cells: list[int]) -> list[Result]:
    """Hand cells to idle actors until every cell has an outcome."""
    todo, running, results, attempts, deaths = deque(cells), {}, {}, Counter(), Counter()

    def feed(actor) -> None:
        batch = [todo.popleft() for _ in range(min(capacity[actor], len(todo)))]
        if batch:
            running[actor.run.remote(batch)] = (actor, batch)
    for actor in capacity:
        feed(actor)
    while running:
        [ref], _ = ray.wait(list(running), num_returns=1)
        actor, batch = running.pop(ref)
        try:
            results.update({r[0]: r for r in ray.get(ref)})
        except ray.exceptions.RayActorError as exc:  # the actor died: node lost, killed
            deaths[actor] += 1
            for c in reversed(batch):
                attempts[c] += 1
                if attempts[c] < RAY_ATTEMPTS:
                    todo.appendleft(c)
                else:
                    results[c] = (c, "failed", f"cell {c}: its Ray worker died {attempts[c]} "
                                               f"times ({exc.__class__.__name__})")
        except ray.exceptions.RayTaskError as exc:
            results.update({c: (c, "failed", f"cell {c}: {exc}") for c in batch})
        if deaths[actor] < RAY_ATTEMPTS:
            feed(actor)
        if not running and todo:  # every actor gave up
            results.update({c: (c, "failed", f"cell {c}: no Ray worker left") for c in todo})
            todo.clear()
    return [results[c] for c in cells]


def run_ray(make_worker: MakeWorker, settings: dict, cells: list[int], *,
            address: str | None, gpus_per_cell: float, use_gpu: bool) -> list[Result]:
    """``cells`` over long-lived Ray actors on the cluster at ``address`` (None: a local
    instance, shut down after every cell has an outcome)."""
    require("ray", "ray", "--executor ray")
    import ray

    started = not ray.is_initialized()
    if started:
        if address and address != "auto":
            _check_address(address)
        ray.init(address=address, include_dashboard=False)
    try:
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0) if use_gpu else 0
        slots = int(gpus / gpus_per_cell) if gpus and gpus_per_cell else int(resources["CPU"])
        n = max(1, min(slots, len(cells)))
        actor_class = ray.remote(num_cpus=1, num_gpus=gpus_per_cell if gpus else 0,
                                 max_restarts=RAY_ATTEMPTS)(RayWorker)
        task, share = f"ray:{uuid.uuid4().hex[:12]}", min(1.0, gpus_per_cell) if gpus else 1.0
        eta = -(-len(cells) // n)
        actors = [actor_class.remote(make_worker, settings, slot, task, eta if slot == 0 else 0,
                                     share) for slot in range(n)]
        capacity, errors = _start_actors(ray, actors)
        if not capacity:
            why = "; ".join(dict.fromkeys(errors))
            return [(c, "failed", f"cell {c}: no Ray worker could start ({why})") for c in cells]
        return _drive(ray, capacity, cells)
    finally:
        if started:
            ray.shutdown()
