"""``--executor ray``: scans as tasks on a (local, 2-CPU) Ray instance, one shard written by
the driver with the local pool's resume, error-row and time-limit guarantees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fer3d_data import synth
from fer3d_data.datasets.select import walk_and_select
from fer3d_data.prep import PrepConfig, ray_executor, run_prep
from fer3d_data.shards import open_shard

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def contents(path) -> dict:
    with open_shard(path) as shard:
        out = {name: shard.file[name][()] for name in shard.spec}
        out.update({f"index/{k}": v for k, v in shard.index.items()})
        out["errors"] = sorted((e["source"], e["step"], e["message"]) for e in shard.errors())
    return out


def test_ray_executor_resumes_and_writes_what_the_local_pool_writes(local_ray, tmp_path):
    raw = tmp_path / "raw"
    labels = synth.make_folder(raw, subjects=1, frames=2, vertices=3000, texture_size=96)
    records, chosen, names = walk_and_select("folder", raw, {}, {"labels": labels})
    cfg = PrepConfig(dataset="folder", image_size=32, landmark_scheme=str(raw / "scheme.yaml"))
    run = dict(raw_root=raw, label_names=names, progress=False)
    local = run_prep(chosen, tmp_path / "local.h5", cfg, workers=0, **run)
    half = len(chosen) // 2
    first = run_prep(chosen[:half], tmp_path / "ray.h5", cfg, workers=0, **run)  # cut short
    resumed = run_prep(chosen, tmp_path / "ray.h5", cfg, executor="ray", **run)
    assert first.written > 0 and resumed.skipped == first.written
    assert resumed.written == local.written - first.written
    assert resumed.failed_by_step == local.failed_by_step and local.failed == synth.folder.BROKEN
    a, b = contents(tmp_path / "local.h5"), contents(tmp_path / "ray.h5")
    assert a.keys() == b.keys()
    for key in a:
        if key == "errors":
            assert a[key] == b[key]
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # the per-scan time limit holds inside a Ray task (SIGALRM in the worker)
    quick = dataclasses.replace(cfg, scan_timeout=1e-4)
    good = [r for r in chosen if r.problem is None][:2]
    late = run_prep(good, tmp_path / "late.h5", quick, executor="ray", **run)
    assert late.failed_by_step == {"timeout": 2} and late.n_samples == 0
    assert late.seconds < ray_executor._BACKSTOP_S  # the task's own alarm, not the driver's
