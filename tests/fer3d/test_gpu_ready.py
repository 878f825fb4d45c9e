"""What a first GPU campaign would hit, each simulated on the CPU: device names and
placement (torchrun, srun, --parallel-cells), GPUs allocated but unusable, the current
device, Slurm task slots, claims of retried tasks, SIGTERM, RNG states of other machines,
map_location, and failed cells that let the others go on (locally and on Ray)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import time

import pytest
import torch

from fer3d.campaign import claims, executors
from fer3d.campaign import run as campaign
from fer3d.campaign.plan import task_slot
from fer3d.campaign.run import run_campaign
from fer3d.campaign.rundir import RunDir
from fer3d.errors import CellsFailedError, ConfigError
from fer3d.settings import TrainConfig
from fer3d.train import packed as trainer
from fer3d.train import runtime


def tiny(shard, out, **kw) -> TrainConfig:
    base = dict(shards=[shard], out=str(out), folds=2, subjects=2, epochs=2, batch_size=6,
                image_size=32, lr=1e-3, variant="texture_only", progress=False,
                checkpoint_every=1)
    return TrainConfig(**{**base, **kw})


# --------------------------------------------------------------------------- devices

def test_device_setting_takes_one_gpu_by_index():
    assert TrainConfig(shards=["x.h5"], device="cuda:0").device == "cuda:0"
    assert TrainConfig(shards=["x.h5"], device="CUDA:7").device == "cuda:7"
    for bad in ("cuda:x", "gpu", "cuda:-1"):
        with pytest.raises(ConfigError, match=f"device: '{bad}' is not a device"):
            TrainConfig(shards=["x.h5"], device=bad)


@pytest.fixture
def eight_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)


@pytest.mark.parametrize("env, worker, index", [
    ({"LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8"}, 0, 3),              # torchrun
    ({"LOCAL_RANK": "3"}, 0, 3),                                       # size unknown
    ({"SLURM_LOCALID": "5", "SLURM_STEP_TASKS_PER_NODE": "8"}, 0, 5),  # plain srun
    ({"SLURM_LOCALID": "5", "SLURM_STEP_TASKS_PER_NODE": "8(x2)"}, 0, 5),
    ({}, 2, 2), ({}, 9, 1),                                            # --parallel-cells
    ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 1, 3),              # 2 ranks, 8 GPUs
    ({"SLURM_LOCALID": "0", "SLURM_STEP_TASKS_PER_NODE": "1"}, 6, 6),  # 1 task, 8 workers
])
def test_cuda_is_this_process_gpu(eight_gpus, env, worker, index):
    assert runtime.resolve_device("cuda", worker=worker, env=env) == torch.device("cuda", index)
    assert runtime.resolve_device("auto", worker=worker, env=env) == torch.device("cuda", index)
    assert runtime.resolve_device("cuda:4", worker=worker, env=env) == torch.device("cuda", 4)


def test_each_rank_seeing_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)     # --gpus-per-task=1
    env = {"SLURM_LOCALID": "5", "SLURM_STEP_TASKS_PER_NODE": "8"}
    assert runtime.resolve_device("cuda", env=env) == torch.device("cuda", 0)


@pytest.fixture
def broken_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")

    def too_old():
        raise RuntimeError("The NVIDIA driver on your system is too old (found version "
                           "12040).\nPlease update your GPU driver")
    monkeypatch.setattr(torch.cuda, "init", too_old)


@pytest.mark.parametrize("env", [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"SLURM_JOB_GPUS": "3"},
                                 {"SLURM_GPUS_ON_NODE": "4"}])
def test_auto_refuses_allocated_gpus_that_torch_cannot_use(broken_cuda, env):
    with pytest.raises(ConfigError) as err:
        runtime.resolve_device("auto", env=env)
    text = str(err.value)
    assert "\n" not in text and f"{next(iter(env))}=" in text
    assert "too old (found version 12040)" in text and "built for CUDA 13.0" in text
    assert "driver >= 580.65" in text and "--device cpu" in text


@pytest.mark.parametrize("env", [{}, {"CUDA_VISIBLE_DEVICES": ""}, {"SLURM_GPUS_ON_NODE": "0"},
                                 {"CUDA_VISIBLE_DEVICES": "NoDevFiles"}])
def test_auto_is_the_cpu_where_no_gpu_is_allocated(broken_cuda, env):
    assert runtime.resolve_device("auto", env=env) == torch.device("cpu")


def test_a_cpu_only_torch_says_so(broken_cuda, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(ConfigError, match="is a CPU-only build: install a CUDA build"):
        runtime.resolve_device("cuda", env={})


def test_configure_makes_the_chosen_gpu_current(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    runtime.configure(torch.device("cuda", 5))
    assert chosen == [torch.device("cuda", 5)] and torch.backends.cudnn.benchmark
    runtime.configure(torch.device("cpu"))
    assert len(chosen) == 1


def test_parallel_workers_get_their_slots(monkeypatch):
    """Each --parallel-cells worker process builds its worker with its own slot (its GPU
    through resolve_device(worker=slot)) and pulls cells until the queue ends."""
    seen = []
    monkeypatch.setattr(campaign, "prepare", lambda cfg, worker, share: seen.append(
        (worker, share)) or type("Ctx", (), {"eta_cells": 0})())
    campaign.make_worker({"shards": ["x.h5"]}, 3, None, 0, 0.5)
    assert seen == [(3, 0.5)]

    class Worker:
        capacity = 2

        def run(self, cells):
            return [(c, "trained", "") for c in cells]
    todo, done = queue.Queue(), queue.Queue()
    for c in (4, 5, 6, None):
        todo.put(c)
    slots = []
    executors._process_main(lambda s, slot, *a: slots.append(slot) or Worker(), {}, 2, todo,
                            done, 1, 0, 1.0)
    msgs = [done.get_nowait() for _ in range(done.qsize())]
    assert slots == [2] and [m[0] for m in msgs] == ["start", "done", "start", "done"]
    assert msgs[1][2] == [(4, "trained", ""), (5, "trained", "")]


# --------------------------------------------------------------------------- task slots

def test_plain_srun_tasks_share_the_cells():
    assert task_slot(None, None, {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8"}) == (5, 8)
    array = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4",
             "SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8"}
    assert task_slot(None, None, array) == (21, 32)
    # the batch script's own process (no srun step) keeps every cell
    assert task_slot(None, None, {"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) == (0, 1)
    # torchrun inside srun: its ranks
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "SLURM_PROCID": "0",
                "SLURM_STEP_NUM_TASKS": "1"}
    assert task_slot(None, None, torchrun) == (3, 4)


# --------------------------------------------------------------------------- claims

def test_task_id_names_the_scheduler_task():
    assert claims.task_id({}) is None
    assert claims.task_id({"SLURM_JOB_ID": "77"}) == "slurm:77"
    assert claims.task_id({"SLURM_JOB_ID": "78", "SLURM_ARRAY_JOB_ID": "70",
                           "SLURM_ARRAY_TASK_ID": "8", "SLURM_STEP_ID": "0",
                           "SLURM_PROCID": "3"}) == "slurm:70_8.0.3"
    assert claims.task_id({"RANK": "2", "TORCHELASTIC_RUN_ID": "abc"}) == "torchrun:abc:2"


def _foreign_claim(tmp_path, cell: int, task: str | None):
    path = RunDir(tmp_path).claim(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": "node-elsewhere", "pid": 1, "task": task}))
    return path


def test_a_retried_task_takes_its_own_claim_at_once(tmp_path):
    """A requeued Slurm task (or retried Ray cell) finds the claim its earlier attempt left
    on another host, heartbeat fresh: the same task id, so it takes it over now."""
    path = _foreign_claim(tmp_path, 3, "slurm:70_8")
    mine = claims.try_claim(path, stale_after=300, task="slurm:70_8")
    assert mine is not None
    owner = claims.read_owner(path)
    assert owner["host"] == socket.gethostname() and owner["pid"] == os.getpid()
    assert owner["task"] == "slurm:70_8" and owner["started"] <= time.time()
    mine.release()


def test_another_tasks_claim_on_another_host_waits_for_its_timeout(tmp_path):
    path = _foreign_claim(tmp_path, 4, "slurm:70_9")
    assert claims.try_claim(path, stale_after=300, task="slurm:70_8") is None
    assert claims.try_claim(path, stale_after=300, task=None) is None
    os.utime(path, (time.time() - 400, time.time() - 400))
    taken = claims.try_claim(path, stale_after=300, task="slurm:70_8")
    assert taken is not None
    taken.release()


# --------------------------------------------------------------------------- SIGTERM

@pytest.fixture(scope="module")
def reference(shard_factory, tmp_path_factory):
    shard = shard_factory("bu3dfe.h5", n_subjects=6, size=32)
    return shard, run_campaign(tiny(shard, tmp_path_factory.mktemp("ref") / "run"))


def test_sigterm_releases_the_claim_and_keeps_the_checkpoint(reference, tmp_path, monkeypatch):
    shard, summary = reference
    real, calls = trainer.train_epoch, []

    def terminated_in_second_cells_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            signal.raise_signal(signal.SIGTERM)
        return real(*a, **k)
    monkeypatch.setattr(trainer, "train_epoch", terminated_in_second_cells_second_epoch)
    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or one a library set (ray.init)
    with pytest.raises(SystemExit) as stop:
        run_campaign(tiny(shard, tmp_path / "run"))
    assert stop.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before                 # handler restored
    run = tmp_path / "run"
    assert list(run.glob("claims/*")) == []                            # released
    assert torch.load(run / "cells/r0_f1/checkpoint.pt", weights_only=True)["epoch"] == 1
    assert (run / "cells/r0_f0/fold.json").exists()
    monkeypatch.setattr(trainer, "train_epoch", real)
    assert run_campaign(tiny(shard, run, resume=True)) == summary


# --------------------------------------------------------------------------- RNG, loads

def test_checkpoints_hold_this_process_gpu_rng_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device: torch.full((4,), device.index, dtype=torch.uint8))
    state = runtime.rng_state(torch.device("cuda", 3))
    assert torch.equal(state["cuda"], torch.full((4,), 3, dtype=torch.uint8))
    assert "cuda" not in runtime.rng_state(torch.device("cpu"))


def test_a_checkpoint_with_eight_gpu_states_resumes_on_one(monkeypatch):
    """Older checkpoints of a torchrun rank hold all 8 GPUs' states; a 1-GPU job restores
    its own (was: IndexError from set_rng_state_all)."""
    set_to = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: set_to.append(
        (int(s[0]), device)))
    state = runtime.rng_state(torch.device("cpu"))
    state["cuda"] = [torch.full((4,), i, dtype=torch.uint8) for i in range(8)]
    runtime.set_rng_state(state, torch.device("cuda", 0))
    runtime.set_rng_state(state, torch.device("cuda", 5))
    runtime.set_rng_state({**state, "cuda": state["cuda"][:2]}, torch.device("cuda", 5))
    assert set_to == [(0, torch.device("cuda", 0)), (5, torch.device("cuda", 5)),
                      (0, torch.device("cuda", 5))]


def test_every_checkpoint_load_maps_to_the_cpu(bu3dfe_shard, tmp_path, monkeypatch):
    """Pretrained weights, checkpoint.pt (resume) and best.pt (validation split): a file
    written on cuda:7 must load on a machine without it."""
    import torchvision

    from fer3d.train.checkpoint import CellCheckpoints

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    real_load, real_save, loads = torch.load, CellCheckpoints.save_resume, []

    def spy(f, *a, **k):
        loads.append((os.path.basename(str(f)), k.get("map_location"), k.get("weights_only")))
        return real_load(f, *a, **k)

    def stop(self, state):
        real_save(self, state)
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setattr(CellCheckpoints, "save_resume", stop)
    cfg = dict(subjects=4, val_subjects=1, cells="0", pretrained=str(tmp_path / "r18.pth"))
    with pytest.raises(KeyboardInterrupt):
        run_campaign(tiny(bu3dfe_shard, tmp_path / "run", **cfg))
    run_campaign(tiny(bu3dfe_shard, tmp_path / "run", resume=True, **cfg))
    assert {"r18.pth", "checkpoint.pt", "best.pt"} <= {name for name, _, _ in loads}
    assert all(m == "cpu" and w is True for _, m, w in loads), loads


# --------------------------------------------------------------------------- failed cells

def test_a_failed_cell_is_recorded_and_the_others_go_on(bu3dfe_shard, tmp_path):
    run = tmp_path / "run"
    run_campaign(tiny(bu3dfe_shard, run, init_only=True))
    broken = run / "cells/r0_f0/checkpoint.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    with pytest.raises(CellsFailedError, match=r"1 cell\(s\) failed, the others went on: "
                                              r"cell 0 \(r0 f0\): .*checkpoint.pt"):
        run_campaign(tiny(bu3dfe_shard, run, resume=True))
    assert (run / "cells/r0_f1/fold.json").exists() and list(run.glob("claims/*")) == []


# --------------------------------------------------------------------------- Ray

class _Ref:
    def __init__(self, fn):
        self.fn = fn


class _Method:
    def __init__(self, actor, name):
        self.actor, self.name = actor, name

    def remote(self, *args):
        return _Ref(lambda: self.actor.call(self.name, *args))


class _Actor:
    def __init__(self, ray, cls, args):
        self.ray, self.cls, self.args, self.obj, self.error = ray, cls, args, None, None
        try:
            self.obj = cls(*args)
        except Exception as exc:  # noqa: BLE001 (Ray reports it at the first call)
            self.error = exc
        ray.actors.append(self)

    def call(self, name, *args):
        if self.error is not None:
            raise self.ray.exceptions.RayActorError(str(self.error))
        if self.ray.dies and name == "run":
            self.ray.dies -= 1
            raise self.ray.exceptions.RayActorError("the node died")
        return getattr(self.obj, name)(*args)

    def __getattr__(self, name):
        return _Method(self, name)


class FakeRay:
    """Enough of ray for the driver: remote actors run in this process, one at a time."""

    class exceptions:
        class RayActorError(Exception):
            pass

        class RayTaskError(Exception):
            pass

    def __init__(self, gpus=0.0, dies=0):
        import importlib.machinery

        self.__spec__ = importlib.machinery.ModuleSpec("ray", None)  # importable, for require
        self.resources, self.dies = {"CPU": 2.0, "GPU": gpus}, dies
        self.actors, self.options, self.initialized = [], {}, False

    def is_initialized(self):
        return self.initialized

    def init(self, **kw):
        self.initialized = True

    def shutdown(self):
        self.initialized = False

    def cluster_resources(self):
        return self.resources

    def remote(self, **options):
        self.options = options
        return lambda cls: type("ActorClass", (), {"remote": lambda *a: _Actor(self, cls, a)})

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.fn()


@pytest.fixture
def fake_ray(monkeypatch):
    import sys

    def install(**kw):
        ray = FakeRay(**kw)
        monkeypatch.setitem(sys.modules, "ray", ray)
        return ray
    return install


def test_ray_device_setup_happens_on_the_workers(fake_ray, bu3dfe_shard, tmp_path):
    """--device cuda from a CPU-only head: the driver plans without refusing or recording
    "cpu"; each worker sets its device up (here it has none: every cell fails, named)."""
    ray = fake_ray(gpus=0.0)
    with pytest.raises(CellsFailedError, match="no Ray worker could start .*--device cuda "
                                               "asked but torch cannot use CUDA"):
        run_campaign(tiny(bu3dfe_shard, tmp_path / "run", executor="ray", device="cuda"))
    record = json.loads((tmp_path / "run/config.json").read_text())
    assert record["resolved"]["device"] == "cuda on each worker"
    assert len(ray.actors) == 2 and not ray.initialized                 # shut down after


def test_ray_actors_pull_cells_and_a_dead_one_is_retried(fake_ray, reference, tmp_path,
                                                         monkeypatch):
    """Two long-lived actors (each set up once) take the cells; the first call to die
    loses its cell to a retry, which takes the dead attempt's claim over at once; the
    summary is the reference's. Paths reach the workers absolute."""
    shard, summary = reference
    ray = fake_ray(gpus=0.0, dies=1)
    built = []
    real = campaign.make_worker

    def make_worker(settings, slot, task, *a):
        built.append((settings["out"], settings["shards"], task))
        return real(settings, slot, task, *a)
    monkeypatch.setattr(campaign, "make_worker", make_worker)
    monkeypatch.chdir(tmp_path)
    out = run_campaign(tiny(os.path.relpath(shard), "run", executor="ray"))
    assert out == summary and len(built) == 2
    assert all(os.path.isabs(o) and all(map(os.path.isabs, s)) for o, s, _ in built)
    assert built[0][2] == built[1][2] and built[0][2].startswith("ray:")
    assert ray.options["num_cpus"] == 1 and ray.options["max_restarts"] >= 1


def test_ray_a_failing_cell_does_not_stop_the_others(fake_ray, reference, tmp_path):
    shard, _ = reference
    fake_ray(gpus=0.0)
    run = tmp_path / "run"
    run_campaign(tiny(shard, run, init_only=True))
    (run / "cells/r0_f1").mkdir(parents=True)
    (run / "cells/r0_f1/checkpoint.pt").write_bytes(b"")
    with pytest.raises(CellsFailedError, match=r"cell 1 \(r0 f1\): .*empty file"):
        run_campaign(tiny(shard, run, executor="ray", resume=True))
    assert (run / "cells/r0_f0/fold.json").exists()
