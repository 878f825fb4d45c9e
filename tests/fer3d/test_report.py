"""fer3d-report and fer3d.report on run directories in the engine's layout: numbers equal
summary.json, the paper's number beside ours, std over folds for one repeat, every file
written, unreadable runs recorded and skipped."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_runs import write_run

from fer3d.cli.report import report_command
from fer3d.errors import RunError
from fer3d.paper.targets import build_target
from fer3d.report import load_run, tables


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "afnet_m", "afnet_m", seed=1)
    write_run(root / "no_ma", "afnet_m_no_ma", seed=2)
    write_run(root / "one_repeat", "fusion_s1_data", "bosphorus", repeats=1, folds=3, seed=3)
    return root


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_report_numbers_equal_summaries(runs_dir, tmp_path):
    names = ["afnet_m", "no_ma", "one_repeat"]
    result = CliRunner().invoke(report_command, [*(str(runs_dir / n) for n in names), "-o",
                                                 str(tmp_path), "--no-params"])
    assert result.exit_code == 0, result.output
    rows = {r["run"]: r for r in _csv(tmp_path / "tables" / "runs.csv")}
    for name in names:
        summary = json.loads((runs_dir / name / "summary.json").read_text())
        row = rows[name]
        assert float(row["accuracy (%)"]) == pytest.approx(100 * summary["accuracy_mean"], abs=1e-9)
        if summary["repeats"] > 1:
            assert row["std over"] == "repeats"
            assert float(row["std (%)"]) == pytest.approx(100 * summary["accuracy_std"], abs=1e-9)
    per_class = {r["variant"]: r for r in _csv(tmp_path / "tables" / "per_class.csv")}
    summary = json.loads((runs_dir / "afnet_m" / "summary.json").read_text())
    for name, acc in summary["per_class_accuracy"].items():
        assert float(per_class["afnet_m"][name]) == pytest.approx(100 * acc)
    folds = _csv(tmp_path / "tables" / "per_fold.csv")
    assert len(folds) == 2 * 2 + 2 * 2 + 3


def test_one_repeat_reports_std_over_folds(runs_dir):
    run = load_run(runs_dir / "one_repeat")
    mean, std, over = run.accuracy()
    accs = [100 * c["accuracy"] for c in run.cells]
    assert over == "folds" and run.summary["accuracy_std"] == 0.0
    assert std == pytest.approx(float(__import__("numpy").std(accs, ddof=1)))
    assert mean == pytest.approx(100 * run.summary["accuracy_mean"])


def test_paper_number_beside_ours_only_where_published(runs_dir):
    runs = [load_run(runs_dir / n) for n in ("afnet_m", "no_ma")]
    table = tables.target_table("table3", runs)
    by_variant = {row[1]: row for row in table.rows}
    afnet = by_variant["afnet_m"]
    assert afnet[-2] == 90.08 and afnet[-1] == pytest.approx(afnet[3] - 90.08)
    assert by_variant["afnet_m_no_ma"][-2] is None
    assert by_variant["texture_only"][5] == "not run"
    md = tables.to_markdown(table)
    assert "| 2D + 3D + MA (AFNet-M) | afnet_m | BU-3DFE |" in md and "| 90.08 |" in md
    tex = tables.to_latex(table)
    assert r"afnet\_m" in tex and r"\toprule" in tex and "%" not in tex.replace(r"\%", "")


def test_targets_and_report_write_every_file(runs_dir, tmp_path):
    runs = [load_run(runs_dir / n) for n in ("afnet_m", "no_ma", "one_repeat")]
    for target in ("table1", "table2", "table3"):
        files = build_target(target, runs, tmp_path / target)
        assert sorted(p.suffix for p in files) == [".csv", ".md", ".tex"]
    figs = build_target("fig4", runs, tmp_path / "fig4")
    assert [p.name for p in figs] == ["fig4-confusion-afnet_m-bu3dfe.png"]
    fig5 = build_target("fig5", runs, tmp_path / "fig5")
    assert tmp_path / "fig5" / "fig5.png" in fig5
    for png in [*figs, *fig5]:
        if png.suffix == ".png":
            assert png.stat().st_size > 5000


def test_report_records_unreadable_runs(runs_dir, tmp_path):
    unfinished = tmp_path / "unfinished"
    (unfinished / "cells" / "r0_f0").mkdir(parents=True)
    (unfinished / "config.json").write_text(json.dumps({"config": {}}))
    (unfinished / "cells" / "r0_f0" / "fold.json").write_text("{}")
    with pytest.raises(RunError, match=r"unfinished: no summary.json.*1 cell\(s\) done"):
        load_run(unfinished)
    out = tmp_path / "report"
    result = CliRunner().invoke(report_command, [str(runs_dir / "afnet_m"), str(unfinished),
                                                 "-o", str(out), "--no-params"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "unfinished" in result.output
    text = (out / "report.md").read_text()
    assert "## Runs not included" in text and "no summary.json" in text
    assert (out / "figures" / "confusion-afnet_m-bu3dfe.png").is_file()
    assert (out / "figures" / "curves-afnet_m-bu3dfe.png").is_file()
    strict = CliRunner().invoke(report_command, [str(runs_dir / "afnet_m"), str(unfinished),
                                                 "-o", str(out), "--no-params", "--strict"])
    assert strict.exit_code == 2 and "1 of 2 run(s) could not be read" in strict.output


def test_missing_cells_are_named(runs_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(runs_dir / "afnet_m", broken)
    shutil.rmtree(broken / "cells" / "r1_f0")
    with pytest.raises(RunError, match="covers 4 cells but 3"):
        load_run(broken)
