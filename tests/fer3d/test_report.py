"""fer3d-report and fer3d.report on run directories in the engine's layout: numbers equal
summary.json, every number the paper prints beside ours, one figure of spread named as
fer3d-train names it, paired differences of the ablation rows (and --compare), every file
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
from fer3d.errors import PairingError, RunError
from fer3d.paper import catalog
from fer3d.paper.targets import build_target
from fer3d.report import load_run, paper_tables, tables
from fer3d.report.compare import compare, fold_scores
from fer3d.report.figures import confusion_title
from fer3d.report.stats import corrected_paired
from fer3d.report.text import format_summary


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
        assert row["spread"] == summary["accuracy_spread_name"]
        assert float(row["spread (%)"]) == pytest.approx(100 * summary["accuracy_spread"],
                                                          abs=1e-9)
    per_class = {r["variant"]: r for r in _csv(tmp_path / "tables" / "per_class.csv")}
    summary = json.loads((runs_dir / "afnet_m" / "summary.json").read_text())
    for name, acc in summary["per_class_accuracy"].items():
        assert float(per_class["afnet_m"][name]) == pytest.approx(100 * acc)
    folds = _csv(tmp_path / "tables" / "per_fold.csv")
    assert len(folds) == 2 * 2 + 2 * 2 + 3


def test_one_figure_of_spread_named_alike_in_train_and_report(runs_dir):
    """One repeat: the std of its fold accuracies, named "std over folds" in summary.json,
    in fer3d-train's printed line and in the report (it was ± 0.00 in one, ± 8.84 in the
    other)."""
    import numpy as np

    run = load_run(runs_dir / "one_repeat")
    accs = [100 * c["accuracy"] for c in run.cells]
    assert run.summary["accuracy_spread_name"] == "std over folds"
    assert 100 * run.summary["accuracy_spread"] == pytest.approx(np.std(accs, ddof=1))
    mean, spread, name = run.accuracy()
    printed = f"{mean:.2f} ± {spread:.2f} % (std over folds)"
    assert spread > 0 and printed in format_summary(run.summary)
    assert printed in confusion_title(run)
    assert f"| {mean:.2f} | {spread:.2f} | std over folds |" in tables.to_markdown(
        tables.runs_table([run]))
    several = load_run(runs_dir / "afnet_m")
    assert several.accuracy()[2] == "std over repeats"
    assert 100 * several.summary["accuracy_spread"] == pytest.approx(
        np.std([100 * a for a in several.summary["repeat_accuracies"]], ddof=1))


def test_every_published_number_beside_ours(runs_dir):
    runs = [load_run(runs_dir / n) for n in ("afnet_m", "no_ma")]
    table = paper_tables.target_table("table3", runs)
    by_key = {(row[1], row[2]): row for row in table.rows}
    col = {name: i for i, name in enumerate(table.columns)}
    for variant, (bu, bos) in catalog.PUBLISHED_ACCURACY["table3"].items():
        assert by_key[(variant, "BU-3DFE")][col["paper (%)"]] == bu
        assert by_key[(variant, "Bosphorus")][col["paper (%)"]] == bos
    afnet = by_key[("afnet_m", "BU-3DFE")]
    assert afnet[col["ours − paper"]] == pytest.approx(afnet[col["accuracy (%)"]] - 90.08)
    assert by_key[("texture_only", "BU-3DFE")][col["spread"]] == "not run"
    assert by_key[("afnet_m", "Bosphorus")][col["spread"]] == "not run"
    md = tables.to_markdown(table)
    assert "| 2D + 3D + MA (AFNet-M) | afnet_m | BU-3DFE |" in md and "| 90.08 |" in md
    tex = tables.to_latex(table)
    assert r"afnet\_m" in tex and r"\toprule" in tex and "%" not in tex.replace(r"\%", "")


def test_table1_lists_the_other_methods_and_ours(runs_dir):
    table = paper_tables.table1([load_run(runs_dir / "afnet_m")])
    others = [r for r in table.rows if r[4] == "published, not run"]
    assert len(others) == 2 * 13
    printed = {(r[0], r[5]): r[10] for r in others}
    assert printed[("Jan et al. [5]", "BU-3DFE")] == 88.54
    assert printed[("Jan et al. [5]", "Bosphorus")] is None
    assert printed[("Ni et al. [12]", "Bosphorus")] == 85.16
    ours = [r for r in table.rows if r[0] == "Ours (AFNet-M)"]
    assert [(r[2], r[4], r[10]) for r in ours[:3]] == [
        ("2D", "texture_only_ma", 87.68), ("3D", "depth_only_ma", 86.97),
        ("2D+3D", "afnet_m", 90.08)]
    assert ours[2][9] == "2 × 2" and ours[0][9] is None
    md = tables.to_markdown(table)
    assert "| Li et al. [13] | 2012 | 3D | HC | published, not run | BU-3DFE |" in md


def test_table4_carries_the_other_methods_sizes():
    rows = [{"paper_row": "AFNet-M", "model": "afnet_m", "params": 23342982, "fp32_mib": 89.05,
             "paper_unit_mb": 91.55, "paper_mb": 91.54, "diff_mb": 0.01}]
    md = tables.to_markdown(paper_tables.params_table(rows))
    assert "| VGG-M-DF [5] | 2018 | 2D+3D | published, not counted | – | – | – | ≈ 327 | – |" in md
    assert "| DA-CNN [8] |" in md and "≈ 463" in md and "| FFNet-M [11] |" in md and "≈ 93" in md
    assert "| AFNet-M | – | 2D+3D | afnet_m | 23,342,982 | 89.05 | 91.55 | 91.54 | +0.01 |" in md
    assert r"$\approx$ 327" in tables.to_latex(paper_tables.params_table(rows))


def test_ablation_rows_carry_their_paired_difference(runs_dir):
    """AFNet-M vs without MA (Table 3's last rows) on the same plan: the mean of the four
    fold-level differences, the corrected test's interval and p, the paper's 1.19."""
    runs = [load_run(runs_dir / n) for n in ("afnet_m", "no_ma")]
    table = paper_tables.target_table("table3", runs)
    col = {name: i for i, name in enumerate(table.columns)}
    row = next(r for r in table.rows if r[1] == "afnet_m" and r[2] == "BU-3DFE")
    a, b = fold_scores(runs[0]), fold_scores(runs[1])
    expected = corrected_paired([a[c] - b[c] for c in sorted(a)], 12 / 12)
    assert row[col["vs"]] == "2D + 3D"
    assert row[col["Δ (points)"]] == pytest.approx(expected.mean)
    assert tuple(row[col["95 % interval"]]) == pytest.approx((expected.low, expected.high))
    assert row[col["p"]] == pytest.approx(expected.p)
    assert row[col["paper Δ"]] == pytest.approx(1.19)
    reference = next(r for r in table.rows if r[1] == "afnet_m_no_ma" and r[2] == "BU-3DFE")
    assert reference[col["vs"]] is None
    assert any("BU-3DFE: the 2 runs share one plan" in n for n in table.notes)
    md = tables.to_markdown(table)
    assert f"[{expected.low:+.2f}, {expected.high:+.2f}]" in md


def test_runs_on_other_folds_are_unpaired_and_said_so(runs_dir, tmp_path):
    write_run(tmp_path / "moved", "afnet_m_no_ma", seed=2, plan_seed=7)
    a, b = load_run(runs_dir / "afnet_m"), load_run(tmp_path / "moved")
    with pytest.raises(PairingError, match="do not share one plan.*different folds.*--unpaired"):
        compare(a, b)
    assert not compare(a, b, unpaired=True).paired
    table = paper_tables.target_table("table3", [a, b])
    row = next(r for r in table.rows if r[1] == "afnet_m" and r[2] == "BU-3DFE")
    assert row[table.columns.index("vs")] == "2D + 3D (unpaired)"
    assert any("not one plan: afnet_m_no_ma (repeat 1 has different folds" in n
               for n in table.notes)


def test_compare_command(runs_dir, tmp_path):
    result = CliRunner().invoke(report_command, ["--compare", str(runs_dir / "afnet_m"),
                                                 str(runs_dir / "no_ma")])
    assert result.exit_code == 0, result.output
    c = compare(load_run(runs_dir / "afnet_m"), load_run(runs_dir / "no_ma"))
    assert f"A − B: {c.result.mean:+.2f} points, 95 % interval [{c.result.low:+.2f}, " \
           f"{c.result.high:+.2f}]" in result.output
    assert "paired: one plan" in result.output
    assert "plain paired t-test would claim" in result.output
    write_run(tmp_path / "moved", "afnet_m_no_ma", seed=2, plan_seed=7)
    refused = CliRunner().invoke(report_command, ["--compare", str(runs_dir / "afnet_m"),
                                                  str(tmp_path / "moved")])
    assert refused.exit_code == 2 and "do not share one plan" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    unpaired = CliRunner().invoke(report_command, ["--compare", str(runs_dir / "afnet_m"),
                                                   str(tmp_path / "moved"), "--unpaired"])
    assert unpaired.exit_code == 0 and "unpaired: repeat 1 has different folds" in unpaired.output
    bare = CliRunner().invoke(report_command, [str(runs_dir / "afnet_m")])
    assert bare.exit_code == 2 and "--out DIR" in bare.output


def test_report_lists_each_runs_settings_beside_the_papers(tmp_path):
    """The precision a run trained in (config.json's resolved amp) is listed as ours; runs
    that say the same are grouped."""
    from fer3d.report import write_report

    write_run(tmp_path / "bf16", "afnet_m", amp="bfloat16")
    write_run(tmp_path / "fp32", "afnet_m_no_ma", seed=3)
    write_run(tmp_path / "fp32b", "fusion_s1_data", seed=4)
    runs = [load_run(tmp_path / n) for n in ("bf16", "fp32", "fp32b")]
    text = write_report(runs, tmp_path / "r").read_text(encoding="utf-8")
    section = text.split("## Settings beside the paper's")[1].split("\n## ")[0]
    bf16, fp32 = section.split("- `afnet_m_no_ma-bu3dfe`, `fusion_s1_data-bu3dfe`:")
    assert "- `afnet_m-bu3dfe`:" in bf16
    assert "  - precision: bfloat16 autocast (ours: the paper states no precision" in bf16
    assert "precision" not in fp32 and "  - repeats: 2 (ours; the paper: 100)" in fp32
    assert "  - preset: bu3dfe (standard protocol of the paper's references" in fp32


def test_targets_and_report_write_every_file(runs_dir, tmp_path):
    runs = [load_run(runs_dir / n) for n in ("afnet_m", "no_ma", "one_repeat")]
    for target in ("table1", "table2", "table3"):
        files = build_target(target, runs, tmp_path / target)
        assert sorted(p.suffix for p in files) == [".csv", ".md", ".tex"]
    figs = build_target("fig4", runs, tmp_path / "fig4")
    assert [p.name for p in figs] == ["fig4.md", "fig4.tex", "fig4.csv", "fig4.png"]
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
