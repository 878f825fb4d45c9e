"""The demo's last stage (fer3d/cli/demo.py): fer3d-predict on the raw scans of two unseen
synthetic subjects, one without its landmark file and one broken, printed as a table with
its accuracy."""

from __future__ import annotations

import csv

import pytest

from fer3d.cli.demo import predict_unseen
from fer3d_data.schema import EXPRESSIONS


@pytest.mark.slow  # 24 raw scans through the prep chain
def test_the_demo_ends_with_the_prediction_table(synth_models, tmp_path, capsys):
    assert predict_unseen(synth_models["campaign"], tmp_path, trained=2, seed=0) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open(newline="")))
    assert len(rows) == 24 and {r["label"] for r in rows} == set(EXPRESSIONS)
    assert not {r["sample_id"][:5] for r in rows} & {"F0001", "M0001"}  # the trained ones
    header, table, last = lines[0], lines[1:-1], lines[-1]
    assert header.split() == ["sample", "true", "predicted", "p", "landmarks", "note"]
    assert [line.split()[0] for line in table] == [r["sample_id"] for r in rows]
    assert table[0].split()[4:6] == ["dlib", "no"]  # no .bnd: dlib, and the row says so
    broken = f"read: {rows[-1]['sample_id']}_F3D.wrl: unterminated"  # file name, not path
    assert table[-1].split()[2:4] == ["-", "-"] and broken in table[-1]
    for line, r in zip(table[1:-1], rows[1:-1]):
        assert line.split()[1:5] == [r["label"], r["predicted"],
                                     f"{float(r['p_' + r['predicted']]):.2f}", "native"]
    right = sum(r["label"] == r["predicted"] for r in rows[:-1])
    assert last.startswith(f"accuracy on the unseen subjects: {right}/23 predicted scans ("
                           ) and "1 error row(s)" in last
