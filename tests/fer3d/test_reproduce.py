"""fer3d-reproduce: campaigns per target and dataset, each resumed by the engine (a run of
other settings refused, never reused), --keep from flags, config files and recipes, a
failed campaign recorded while the rest is built; Table 4 beside the paper; and (slow)
examples/reproduce_small.py running `fer3d-reproduce all` end to end."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_runs import write_run

from fer3d.cli.reproduce import reproduce_command
from fer3d.errors import Fer3dError
from fer3d.paper import reproduce as rep
from fer3d.paper.catalog import PUBLISHED_ACCURACY, TARGETS, target_variants

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "reproduce_small.py"
SMALL = ["--repeats", "2", "--folds", "2", "--epochs", "1", "--image-size", "64",
         "--pretrained", "none", "--workers", "0", "--no-progress"]


@pytest.fixture
def fake_engine(monkeypatch):
    """run_campaign replaced by one that writes a run directory; records its configs."""
    calls, fail = [], {}

    def run_campaign(cfg):
        calls.append(cfg)
        if cfg.variant in fail:
            raise fail[cfg.variant]
        shutil.rmtree(cfg.out, ignore_errors=True)
        return write_run(Path(cfg.out), cfg.variant, cfg.preset, repeats=cfg.repeats,
                         folds=cfg.folds, seed=len(calls))

    monkeypatch.setattr("fer3d.campaign.run.run_campaign", run_campaign)
    return calls, fail


def test_target_campaigns_each_through_the_engine(fake_engine, bu3dfe_shard, tmp_path, caplog):
    calls, _ = fake_engine
    caplog.set_level("INFO")
    args = ["table3", bu3dfe_shard, "-o", str(tmp_path), *SMALL]
    result = CliRunner().invoke(reproduce_command, args)
    assert result.exit_code == 0, result.output
    assert [c.variant for c in calls] == target_variants("table3")
    cfg = calls[0]
    assert (cfg.resume, cfg.repeats, cfg.folds, cfg.epochs, cfg.image_size, cfg.pretrained,
            cfg.lr, cfg.batch_size, cfg.subjects, cfg.keep) == \
        (False, 2, 2, 1, 64, None, 1e-4, 32, 60, "first")
    assert cfg.out == str(tmp_path / "runs" / "bu3dfe" / "texture_only")
    assert sorted(p.name for p in (tmp_path / "table3").iterdir()) == [
        "table3.csv", "table3.md", "table3.tex"]
    # the disk a reproduction keeps is said before training: 6 campaigns of 4 cells, one
    # cell's weights each (~45-90 MB), where every cell's would be 4 times that
    disk = [r.message for r in caplog.records if "--keep first:" in r.message]
    assert len(disk) == 1 and "of weights for 6 campaign(s) of 4 cells" in disk[0]
    _table_has_every_number_and_its_paired_differences(tmp_path / "table3", "table3")
    # table1 and table2 share afnet_m and afnet_m_no_ma with table3: every campaign goes
    # to the engine again, which resumes a run of the same settings (a finished one costs
    # nothing) and refuses one of other settings (test_changed_settings_are_refused...)
    calls.clear()
    for target in ("table1", "table2"):
        result = CliRunner().invoke(reproduce_command, [target, bu3dfe_shard, "-o",
                                                        str(tmp_path), *SMALL])
        assert result.exit_code == 0, result.output
    assert [c.variant for c in calls] == [*target_variants("table1"), *target_variants("table2")]


def _table_has_every_number_and_its_paired_differences(out: Path, target: str) -> None:
    """Both datasets' printed numbers in the CSV; each ablation row run on BU-3DFE with its
    difference, interval and p; the markdown says the runs share one plan."""
    with open(out / f"{target}.csv", newline="", encoding="utf-8") as fh:
        rows = {(r["variant"], r["dataset"]): r for r in csv.DictReader(fh)}
    for variant, printed in PUBLISHED_ACCURACY[target].items():
        for dataset, value in zip(("BU-3DFE", "Bosphorus"), printed):
            assert float(rows[(variant, dataset)]["paper (%)"]) == value
    for variant, ref in TARGETS[target].pairs:
        row = rows[(variant, "BU-3DFE")]
        assert row["Δ (points)"] and row["95 % interval"].startswith("[") and row["p"], variant
        assert row["vs"] == dict(TARGETS[target].rows)[ref] and row["paper Δ"]
        assert not rows[(variant, "Bosphorus")]["Δ (points)"]  # not run there
    text = (out / f"{target}.md").read_text(encoding="utf-8")
    assert "BU-3DFE: the " in text and "runs share one plan" in text


def test_table2_has_every_number_and_paired_differences(fake_engine, bu3dfe_shard, tmp_path):
    result = CliRunner().invoke(reproduce_command, ["table2", bu3dfe_shard, "-o",
                                                    str(tmp_path), *SMALL])
    assert result.exit_code == 0, result.output
    _table_has_every_number_and_its_paired_differences(tmp_path / "table2", "table2")


def test_figure_failure_is_recorded_and_named(fake_engine, bu3dfe_shard, tmp_path):
    """Fig. 6 needs checkpoints, which the fake engine does not write."""
    result = CliRunner().invoke(reproduce_command, ["fig6", bu3dfe_shard, "-o", str(tmp_path),
                                                    *SMALL])
    assert result.exit_code == 2, result.output
    assert "fig6: 1 part(s) failed" in result.output
    assert "fig6 bu3dfe: RunError:" in result.output and "no weights here" in result.output
    assert [c.variant for c in fake_engine[0]] == ["afnet_m", "afnet_m_no_ma"]


def test_failed_campaign_is_recorded_and_the_others_run(fake_engine, bu3dfe_shard, tmp_path):
    calls, fail = fake_engine
    fail["fusion_s2_decision"] = RuntimeError("fusion_s2_decision diverged")
    result = CliRunner().invoke(reproduce_command, ["table2", bu3dfe_shard, "-o",
                                                    str(tmp_path), *SMALL])
    assert result.exit_code == 2
    assert "bu3dfe fusion_s2_decision: RuntimeError: fusion_s2_decision diverged" in result.output
    assert [c.variant for c in calls] == target_variants("table2")
    rows = (tmp_path / "table2" / "table2.csv").read_text().splitlines()
    assert any(r.startswith("S2,fusion_s2_decision,BU-3DFE,,,not run") for r in rows)
    assert any(r.startswith("S3 (FC),fusion_s3_fc,BU-3DFE,") and "not run" not in r
               for r in rows)


def test_full_disk_stops_at_once(fake_engine, bu3dfe_shard, tmp_path):
    import errno

    calls, fail = fake_engine
    fail["fusion_s1_data"] = OSError(errno.ENOSPC, "No space left on device")
    result = CliRunner().invoke(reproduce_command, ["table2", bu3dfe_shard, "-o",
                                                    str(tmp_path), *SMALL])
    assert result.exit_code == 2 and "no space left on device" in result.output
    assert [c.variant for c in calls] == ["fusion_s1_data"]


def test_table4_prints_the_papers_rows_beside_ours(tmp_path):
    result = CliRunner().invoke(reproduce_command, ["table4", "-o", str(tmp_path),
                                                    "--image-size", "64"])
    assert result.exit_code == 0, result.output
    row = "| {} | – | 2D+3D | {} | {} |"
    assert row.format("AFNet-M", "afnet_m", "23,342,982 | 89.05 | 91.55 | 91.54 | +0.01") \
        in result.output
    assert row.format("without MA", "afnet_m_no_ma", "23,012,998 | 87.79 | 90.29 | 90.51 | "
                      "-0.22") in result.output
    assert row.format("without AF", "fusion_s4_sum_ma", "22,686,086 | 86.54 | 86.54 | 86.53 | "
                      "+0.01") in result.output
    assert "| DA-CNN [8] | 2019 | 2D+3D | published, not counted | – | – | – | ≈ 463 | – |" \
        in result.output
    assert (tmp_path / "table4" / "table4.tex").is_file()


def test_bad_inputs_are_named(bu3dfe_shard, tmp_path, monkeypatch):
    result = CliRunner().invoke(reproduce_command, ["table2", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "table2 trains models: give the shard file(s)" in result.output
    notes = tmp_path / "notes.h5"
    notes.write_text("x")
    with pytest.raises(Fer3dError, match="notes.h5: cannot open as an HDF5 shard"):
        rep.shards_by_dataset([str(notes)])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    result = CliRunner().invoke(reproduce_command, ["table1", bu3dfe_shard, "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--pretrained imagenet: " in result.output
    assert "never downloads" in result.output and not (tmp_path / "runs").exists()
    values = rep.campaign_values("paper", "bu3dfe", {"head_init": "identity"})
    assert (rep.train_config(values, [bu3dfe_shard], tmp_path / "x", "afnet_m").head_init
            == "identity")
    with pytest.raises(Fer3dError, match="has no setting"):
        rep.train_config({**values, "warmup": 3}, [bu3dfe_shard], tmp_path / "x", "afnet_m")


def test_help_without_torch():
    code = ("import sys; sys.modules['torch'] = None; "
            "from fer3d.cli import cam, report, reproduce; "
            "from click.testing import CliRunner; "
            "[print(CliRunner().invoke(c, ['--help']).output) "
            "for c in (reproduce.reproduce_command, report.report_command, cam.cam_command)]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "table1|table2|table3|table4|fig4|fig5|fig6|all" in out
    assert "fer3d-report" in out and "--fusion-weights PNG" in out


@pytest.mark.slow
def test_reproduce_all_end_to_end_through_the_example(shard_factory, tmp_path):
    """The example trains every campaign of the paper at tiny settings and builds all."""
    pytest.importorskip("pytorch_grad_cam")
    shard = shard_factory("repro32.h5", n_subjects=2, size=32, extra_intensity=False)
    out = tmp_path / "repro"
    # 32 px: a quarter of the example's 64 px cost; Grad-CAM maps are tested at 64 in test_cam.
    proc = subprocess.run([sys.executable, str(EXAMPLE), shard, "--out", str(out),
                           "--image-size", "32"],
                          check=False, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for target in ("table1", "table2", "table3", "table4", "fig5"):
        for suffix in (".md", ".tex", ".csv"):
            assert (out / target / f"{target}{suffix}").is_file(), (target, suffix)
    for png in ("fig4/fig4.png", "fig5/fig5.png",
                "fig6/fig6-gradcam-bu3dfe.png", "fig6/fig6-fusion-weights-bu3dfe.png",
                "report/figures/curves-afnet_m-bu3dfe.png"):
        assert (out / png).stat().st_size > 5000, png
    summaries = {v: json.loads((out / "runs" / "bu3dfe" / v / "summary.json").read_text())
                 for v in target_variants("all")}
    with open(out / "report" / "tables" / "runs.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        mean = 100 * summaries[row["variant"]]["accuracy_mean"]
        assert float(row["accuracy (%)"]) == pytest.approx(mean, abs=1e-9)
    assert len(rows) == len(summaries) == len({v for t in TARGETS.values() if t.trains
                                               for v, _ in t.rows})
    assert "AFNet-M" in proc.stdout and "90.08" in proc.stdout
    for target in ("table2", "table3"):
        _table_has_every_number_and_its_paired_differences(out / target, target)


def test_pack_reaches_every_campaign(fake_engine, bu3dfe_shard, tmp_path):
    """--pack (cells trained at once, a process setting) goes to each campaign of the
    target; without it each campaign packs as fer3d-train does (auto: None)."""
    calls, _ = fake_engine
    for out, extra in (("a", ["--pack", "2"]), ("b", [])):
        result = CliRunner().invoke(reproduce_command, ["table1", bu3dfe_shard, "-o",
                                                        str(tmp_path / out), *SMALL, *extra])
        assert result.exit_code == 0, result.output
    n = len(target_variants("table1"))
    assert [c.pack for c in calls] == [2] * n + [None] * n
