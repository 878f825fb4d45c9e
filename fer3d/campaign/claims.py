"""Atomic claims on campaign cells, so that processes sharing a run directory never
train the same cell.

Stage: campaign scheduling. A claim is a file (``RunDir.claim(cell)``) created with
``O_CREAT | O_EXCL`` (atomic on local file systems and NFSv3+), holding host, pid and
start time and the scheduler's task id (:func:`task_id`); a heartbeat thread refreshes its
mtime. A claim belongs to a dead process, and is renamed away (only one renamer succeeds)
and claimed afresh, when its heartbeat is older than ``stale_after`` seconds, when its
owner is a process of this host that no longer exists, or when its owner ran on another
host under this process's own task id: a retried Ray cell, a requeued Slurm task or a
restarted torchrun rank is the same task, so its earlier attempt is over. A finished cell
is one whose ``fold.json`` exists; its claim is then removed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


def task_id(env=None) -> str | None:
    """The scheduler's name for this process's task, the same across retries and requeues
    and different between tasks running at once: Slurm job (array job and index) and step
    task, torchrun run and rank; None outside a scheduler (a Ray cell's id is given by
    its launcher)."""
    env = os.environ if env is None else env
    parts = []
    if "SLURM_JOB_ID" in env:
        job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
               if "SLURM_ARRAY_JOB_ID" in env else env["SLURM_JOB_ID"])
        if "SLURM_STEP_ID" in env:  # an srun step's task
            job += f".{env['SLURM_STEP_ID']}.{env.get('SLURM_PROCID', 0)}"
        parts.append(f"slurm:{job}")
    if "RANK" in env and "TORCHELASTIC_RUN_ID" in env:
        parts.append(f"torchrun:{env['TORCHELASTIC_RUN_ID']}:{env['RANK']}")
    return "/".join(parts) or None


def _owner(task: str | None) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "task": task}


def _create(path: Path, task: str | None) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(_owner(task), fh)
    return True


def age(path: Path) -> float | None:
    """Seconds since the claim's last heartbeat; None when there is no claim."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def read_owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (FileNotFoundError, ValueError):
        return {}


def _owner_gone(path: Path, task: str | None = None) -> bool:
    """True when the claim's owner is a process of this host that no longer exists, or an
    earlier attempt of ``task`` (this process's task id) on another host."""
    owner = read_owner(path)
    if owner.get("host") != socket.gethostname():
        return bool(task) and owner.get("task") == task
    if not owner.get("pid"):
        return False
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def is_live(path: Path, stale_after: float, task: str | None = None) -> bool:
    """A claim exists, its heartbeat is recent and its owner is not known to be dead (to
    a process of task ``task``)."""
    held_for = age(path)
    return held_for is not None and held_for < stale_after and not _owner_gone(path, task)


def _take_over(path: Path, stale_after: float, task: str | None) -> bool:
    """Move a stale claim aside and claim the cell; False if another process was faster."""
    aside = path.with_name(f"{path.name}.stale.{socket.gethostname()}.{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return _create(path, task)
    moved_age = age(aside)
    if moved_age is not None and moved_age < stale_after and not _owner_gone(aside, task):
        # Between our look and the rename another process refreshed the name: give it back.
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        os.unlink(aside)
        return False
    log.warning("%s: taking over the claim of %s (dead: no heartbeat for %.0f s, or an "
                "earlier attempt of this task)", path.name,
                read_owner(aside) or "an unknown process", moved_age or 0.0)
    os.unlink(aside)
    return _create(path, task)


class Claim:
    """A held claim; ``release()`` (or leaving the ``with`` block) removes it."""

    def __init__(self, path: Path, heartbeat: float):
        self.path, self._stop = path, threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                log.warning("%s: claim vanished while training (taken over as stale?)",
                            self.path)
                return

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_claim(path: Path, *, stale_after: float = STALE_AFTER_S,
              heartbeat: float = HEARTBEAT_S, task: str | None = None) -> Claim | None:
    """Claim the cell of claim file ``path`` for this process of task ``task`` (default:
    :func:`task_id`), or None when a live process holds it."""
    task = task_id() if task is None else task
    path.parent.mkdir(parents=True, exist_ok=True)
    if _create(path, task):
        return Claim(path, heartbeat)
    if is_live(path, stale_after, task):
        return None
    return Claim(path, heartbeat) if _take_over(path, stale_after, task) else None
