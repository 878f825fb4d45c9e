"""Campaigns as cells: selection, task slots, claims, attach, summaries, and every way of
spreading cells (sequential, two processes, a process pool, torchrun, Ray, kill -9 and a
rerun) training each cell once and giving the same summary.json to the last digit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer3d.campaign import claims
from fer3d.campaign.plan import parse_cells, task_slot
from fer3d.campaign.run import run_campaign
from fer3d.campaign.rundir import RunDir
from fer3d.campaign.summary import summarize_run
from fer3d.errors import ConfigError
from fer3d.settings import TrainConfig

ROOT = Path(__file__).parents[2]
TINY = ["--folds", "2", "--subjects", "2", "--epochs", "2", "--batch-size", "6",
        "--image-size", "32", "--lr", "1e-3", "--variant", "texture_only", "--no-progress",
        "--checkpoint-every", "1"]


def tiny(shard, out, **kw) -> TrainConfig:
    base = dict(shards=[shard], out=str(out), folds=2, subjects=2, epochs=2, batch_size=6,
                image_size=32, lr=1e-3, variant="texture_only", progress=False,
                checkpoint_every=1)
    return TrainConfig(**{**base, **kw})


def test_parse_cells():
    assert parse_cells("0-3,7, 5", 10) == [0, 1, 2, 3, 5, 7]
    with pytest.raises(ConfigError, match=r"'9-12' is outside the plan's cells 0-9"):
        parse_cells("0,9-12", 10)
    with pytest.raises(ConfigError, match="'a' is not N, N-M or N-"):
        parse_cells("a", 10)


def test_task_slot_from_flags_slurm_and_torchrun():
    assert task_slot(1, 3, {}) == (1, 3)
    assert task_slot(None, None, {}) == (0, 1)
    slurm = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10",
             "SLURM_ARRAY_TASK_COUNT": "4"}
    assert task_slot(None, None, slurm) == (2, 4)
    assert task_slot(None, None, {"RANK": "1", "WORLD_SIZE": "8"}) == (1, 8)
    assert task_slot(None, None, {**slurm, "RANK": "1", "WORLD_SIZE": "2"}) == (5, 8)
    with pytest.raises(ConfigError, match="task index 4 is not below the task count 4"):
        task_slot(4, 4, {})
    with pytest.raises(ConfigError, match="go together"):
        task_slot(1, None, {})


def test_init_only_then_attach_and_refusals(bu3dfe_shard, tmp_path):
    run = tmp_path / "run"
    out = run_campaign(tiny(bu3dfe_shard, run, init_only=True))
    assert out == {"run_dir": str(run), "cells": 2, "init_only": True}
    assert {p.name for p in run.iterdir()} == {"config.json", "folds.json"}
    with pytest.raises(ConfigError, match=r"holds a run of other settings \(epochs: run has 2, "
                                          r"asked 3\)"):
        run_campaign(tiny(bu3dfe_shard, run, epochs=3, resume=True))
    with pytest.raises(ConfigError, match="'5' is outside the plan's cells 0-1"):
        run_campaign(tiny(bu3dfe_shard, run, cells="5"))
    with pytest.raises(ConfigError, match="task index 2 is not below the task count 2"):
        run_campaign(tiny(bu3dfe_shard, run, task_index=2, num_tasks=2))
    status = run_campaign(tiny(bu3dfe_shard, run, task_index=1, num_tasks=2))
    assert status["done"] == [1] and status["missing"] == [0] and not status["complete"]


def test_ray_address_that_does_not_answer(bu3dfe_shard, tmp_path):
    pytest.importorskip("ray")
    from fer3d.errors import Fer3dError

    with pytest.raises(Fer3dError, match="--ray-address 127.0.0.1:9: no Ray head answers"):
        run_campaign(tiny(bu3dfe_shard, tmp_path / "run", executor="ray",
                          ray_address="127.0.0.1:9"))
    assert not list((tmp_path / "run").glob("cells/*/fold.json"))


def test_claims_are_exclusive_and_the_heartbeat_refreshes_them(tmp_path):
    first = claims.try_claim(RunDir(tmp_path).claim(3), stale_after=60, heartbeat=0.05)
    assert first is not None
    assert claims.try_claim(RunDir(tmp_path).claim(3), stale_after=60) is None      # live: held
    time.sleep(0.2)
    assert claims.age(first.path) < 0.2                                # heartbeat ran
    first.release()
    assert not first.path.exists()


def test_claim_of_a_dead_local_process_is_taken_over_at_once(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = RunDir(tmp_path).claim(0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid}))
    claim = claims.try_claim(RunDir(tmp_path).claim(0), stale_after=3600)
    assert claim is not None and claims.read_owner(path)["pid"] == os.getpid()
    claim.release()
    assert list(tmp_path.glob("claims/*")) == []


# Claims the cell of claim file argv[1] with a 50 ms heartbeat, says so, and lives (its
# heartbeat beating) until its stdin closes; the claim is left behind, as by a crash.
CLAIMER = ("import sys; from pathlib import Path; from fer3d.campaign import claims\n"
           "print(claims.try_claim(Path(sys.argv[1]), heartbeat=0.05) is not None, flush=True)\n"
           "sys.stdin.read()")


def _backdate(path: Path, seconds: float = 120.0) -> None:
    """The claim's last heartbeat ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_live_claim_is_held_and_a_stale_one_taken_over(tmp_path):
    path = RunDir(tmp_path).claim(2)
    owner = subprocess.Popen([sys.executable, "-c", CLAIMER, str(path)], env=_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline() == "True\n"
    _backdate(path)                                   # a missed heartbeat ...
    deadline = time.time() + 30
    while claims.age(path) > 60 and time.time() < deadline:  # ... and the next one's refresh
        time.sleep(0.01)
    assert claims.try_claim(path, stale_after=60) is None           # alive and beating: held
    assert claims.read_owner(path)["pid"] == owner.pid
    owner.kill()
    owner.wait()
    _backdate(path)                          # stale: no heartbeat for 120 s, its pid is gone
    taken = claims.try_claim(path, stale_after=60)
    assert taken is not None and claims.read_owner(path)["pid"] == os.getpid()
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # nothing left aside
    taken.release()


def test_another_hosts_claim_is_judged_by_its_heartbeat_alone(tmp_path):
    """A claim written under another host name (a UTS namespace, ``unshare --uts``) by a
    process that has exited: its pid means nothing here, only the heartbeat's age decides."""
    path = RunDir(tmp_path).claim(4)
    done = subprocess.run(["unshare", "--uts", "sh", "-c",
                           'hostname other-host && exec "$0" -c "$1" "$2"', sys.executable,
                           CLAIMER, str(path)], env=_env(), input="", capture_output=True,
                          text=True, timeout=120)
    if done.returncode and "Operation not permitted" in done.stderr:
        pytest.skip(f"unshare --uts is not permitted here: {done.stderr.strip()}")
    assert done.returncode == 0 and done.stdout == "True\n", done.stderr
    owner = claims.read_owner(path)
    assert owner["host"] == "other-host" and _gone(owner["pid"])
    assert claims.try_claim(path, stale_after=60) is None            # heartbeat fresh: held
    _backdate(path)
    taken = claims.try_claim(path, stale_after=60)
    assert taken is not None and claims.read_owner(path)["host"] == os.uname().nodename
    taken.release()


# --------------------------------------------------------------------------- many processes

def _env() -> dict:
    # One intra-op thread everywhere: the same float results as the in-process reference.
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _train(shard, run, *extra, prefix=(), check=True) -> subprocess.CompletedProcess:
    cmd = [*prefix, *(() if prefix else (sys.executable,)), "-m", "fer3d.cli.train", str(shard),
           *TINY, "--out", str(run), *extra]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _killing(shard, run, patch: str) -> subprocess.CompletedProcess:
    """fer3d-train in a subprocess that SIGKILLs itself where ``patch`` says."""
    code = ("import os, signal, sys, torch\n" + patch +
            "\nfrom fer3d.cli.train import main\nsys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, str(shard), *TINY, "--out", str(run)],
                          env=_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(shard_factory, tmp_path_factory):
    shard = shard_factory("bu3dfe.h5", n_subjects=6, size=32)
    run = tmp_path_factory.mktemp("reference") / "run"
    return shard, run_campaign(tiny(shard, run))


def _trained_once(run: Path) -> None:
    for cell in ("r0_f0", "r0_f1"):
        with open(run / "cells" / cell / "epochs.csv") as fh:
            assert [line.split(",")[0] for line in fh][1:] == ["1", "2"]
    assert list(run.glob("claims/*")) == []


@pytest.mark.slow
def test_two_concurrent_tasks(reference, tmp_path):
    shard, summary = reference
    run = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "fer3d.cli.train", shard, *TINY,
                               "--out", str(run),
                               "--task-index", str(i), "--num-tasks", "2"], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    assert json.loads((run / "summary.json").read_text()) == summary
    _trained_once(run)


@pytest.mark.slow
def test_torchrun_two_ranks(reference, tmp_path):
    shard, summary = reference
    torchrun = Path(sys.executable).with_name("torchrun")
    run = tmp_path / "run"
    _train(shard, run, prefix=(str(torchrun), "--nproc_per_node=2", "--master_port=29517"))
    assert json.loads((run / "summary.json").read_text()) == summary
    _trained_once(run)


@pytest.mark.slow
def test_process_pool_of_two(reference, tmp_path):
    shard, summary = reference
    run = tmp_path / "run"
    _train(shard, run, "--parallel-cells", "2")
    assert json.loads((run / "summary.json").read_text()) == summary
    _trained_once(run)


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {
        "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_local_ray(reference, tmp_path, local_ray):
    shard, summary = reference
    run = tmp_path / "run"
    out = run_campaign(tiny(shard, run, executor="ray"))
    assert out == summary
    _trained_once(run)


@pytest.mark.slow
@pytest.mark.parametrize("where, patch", [
    ("training", "import fer3d.train.packed as e\nreal, calls = e.train_epoch, []\n"
                 "def kill(*a, **k):\n"
                 "    calls.append(1)\n"
                 "    if len(calls) == 4:  # repeat 0, fold 1, epoch 2\n"
                 "        os.kill(os.getpid(), signal.SIGKILL)\n"
                 "    return real(*a, **k)\ne.train_epoch = kill"),
    ("checkpoint write", "real = torch.save\n"
                         "def kill(obj, f, *a, **k):\n"
                         "    if 'r0_f1/checkpoint.pt' in str(f):\n"
                         "        open(f, 'wb').write(b'PK\\x03\\x04partial')\n"
                         "        os.kill(os.getpid(), signal.SIGKILL)\n"
                         "    return real(obj, f, *a, **k)\ntorch.save = kill"),
])
def test_kill_9_then_rerun_completes_identically(reference, tmp_path, where, patch):
    shard, summary = reference
    run = tmp_path / "run"
    killed = _killing(shard, run, patch)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (run / "cells/r0_f0/fold.json").exists()                 # finished: kept
    assert not (run / "cells/r0_f1/fold.json").exists()
    assert (run / "claims/c1.claim").exists()                        # the dead one's claim
    status = summarize_run(run)
    assert status["done"] == [0] and status["missing"] == [1] and status["running"] == []
    done_before = (run / "cells/r0_f0/fold.json").stat().st_mtime_ns
    _train(shard, run, "--resume")
    assert json.loads((run / "summary.json").read_text()) == summary
    assert (run / "cells/r0_f0/fold.json").stat().st_mtime_ns == done_before  # not retrained
    _trained_once(run)
