"""fer3d-prep: help texts, errors before any work, and run_prep with a stand-in process_scan."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from fer3d_data import cli, prep, shards
from fer3d_data.datasets.records import ScanRecord
from fer3d_data.errors import Fer3dDataError, RawFormatError, ScanError
from fer3d_data.prep import PrepConfig, run_prep, runner
from fer3d_data.prep import command as prep_command
from fer3d_data.schema import CLASS_CODE

sys.path.insert(0, str(Path(__file__).parent))
from test_shards import S, fake_sample  # noqa: E402

COMMANDS = ("bu3dfe", "bosphorus", "inspect", "verify", "preview", "merge")


def records(n: int, root: Path) -> list[ScanRecord]:
    """Records whose scan_id matches fake_sample(i).sample_id; mesh paths under root."""
    out = []
    for i in range(n):
        s = fake_sample(i)
        out.append(ScanRecord(dataset="bu3dfe", scan_id=s.sample_id, subject=s.subject,
                              expression=s.expression, intensity=s.intensity, capture="F3D",
                              mesh=root / s.subject / f"{s.sample_id}_F3D.wrl", texture=None,
                              landmarks=None))
    return out


def fake_process_scan(fail: dict):
    """A process_scan returning fake samples, raising for scan ids in ``fail``."""
    def process_scan(record, cfg):
        i = int(record.subject[1:]) * 7 + CLASS_CODE[record.expression]
        if record.scan_id in fail:
            raise fail[record.scan_id]
        return dataclasses.replace(fake_sample(i), source="set by the driver")
    return process_scan


def invoke(*args):
    """fer3d-prep through click's CliRunner (stdout and stderr apart)."""
    return CliRunner().invoke(cli.fer3d_prep, [str(a) for a in args])


@pytest.mark.parametrize("command", COMMANDS + ("synth", "synth bu3dfe", "synth bosphorus"))
def test_help_of_every_subcommand(command):
    r = invoke(*command.split(), "--help")
    assert r.exit_code == 0, r.output
    assert f"fer3d-prep {command}" in r.output
    # one "(default ...)" per option at most: the old --workers/-o printed two that disagreed
    for line in r.output.splitlines():
        assert line.count("default:") <= 1, line


def test_top_level_help_lists_commands():
    out = invoke("--help").output
    for command in COMMANDS + ("synth",):
        assert command in out


def test_prep_help_shows_defaults_choices_and_names_inputs():
    out = " ".join(invoke("bu3dfe", "--help").output.split())
    assert "RAW SHARD" in out
    assert "[default: 224]" in out and "[default: 90.0]" in out and "[default: auto]" in out
    assert "[triangle|bilinear|nearest]" in out and "[float32|float16]" in out
    assert "--shard I/N" in out and "--overwrite" in out and "[default: (all cores)]" in out
    assert "--intensities" in out and "AN,DI,FE" in out
    bos = " ".join(invoke("bosphorus", "--help").output.split())
    assert "--intensities" not in bos and "AN,DI" not in bos and "--expressions" in bos
    for command in ("inspect", "verify", "preview"):
        assert f"fer3d-prep {command} [OPTIONS] SHARD" in invoke(command, "--help").output


def test_bosphorus_refuses_bu3dfe_options(tmp_path):
    (tmp_path / "raw").mkdir()
    r = invoke("bosphorus", tmp_path / "raw", tmp_path / "o.h5", "--intensities", "3")
    assert r.exit_code == 2 and "No such option '--intensities'" in r.output
    r = invoke("bosphorus", tmp_path / "raw", tmp_path / "o.h5", "--expressions", "AN")
    assert r.exit_code == 2 and "unknown 'AN'" in r.output


def test_main_returns_exit_codes(tmp_path, capsys):
    assert cli.main(["--help"]) == 0
    assert cli.main(["bu3dfe", str(tmp_path / "nope"), str(tmp_path / "out.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["verify", str(tmp_path / "none.h5")]) == 1


def test_missing_raw_dir(tmp_path):
    r = invoke("bu3dfe", tmp_path / "nope", tmp_path / "out.h5")
    assert r.exit_code == 2 and "'RAW'" in r.output and "does not exist" in r.output
    assert not (tmp_path / "out.h5.tmp").exists()


def test_empty_raw_tree(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("no scans here")
    r = invoke("bosphorus", tmp_path / "raw", tmp_path / "out.h5", "--quiet")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "no scans found" in r.output and "bs000_E_ANGER_0.bnt" in r.output
    assert not list(tmp_path.glob("out.h5*"))


def test_missing_output_dir(tmp_path):
    (tmp_path / "raw").mkdir()
    r = invoke("bu3dfe", tmp_path / "raw", tmp_path / "no" / "out.h5")
    assert r.exit_code == 2 and f"output directory {tmp_path / 'no'} does not exist" in r.output


def test_existing_output_of_another_version(tmp_path):
    (tmp_path / "raw").mkdir()
    out = tmp_path / "out.h5"
    with h5py.File(out, "w") as f:
        f.attrs.update({"format": "fer3d-shard", "format_version": 99})
    r = invoke("bu3dfe", tmp_path / "raw", out)
    assert r.exit_code == 2 and "format_version 99" in r.output and "--overwrite" in r.output


@pytest.mark.parametrize("option, value, message", [
    ("--shard", "4/4", "need 0 <= I < N"),
    ("--shard", "x", "expected I/N"),
    ("--expressions", "joy", "unknown 'joy'"),
    ("--intensities", "5", "5 is not in 0-4"),
    ("--interp", "cubic", "'cubic' is not one of 'triangle', 'bilinear', 'nearest'"),
    ("--size", "1.5", "'1.5' is not an integer"),
    ("--size", "4", "image_size must be >= 8 and <= 1024"),
    ("--size", "2048", "image_size must be >= 8 and <= 1024"),  # 6.8 GB per scan
    ("--size", "50", "image_size must be a multiple of 4 (training attends with masks at S/4)"),
])
def test_bad_options_are_one_line_errors(tmp_path, option, value, message):
    (tmp_path / "raw").mkdir()
    r = invoke("bu3dfe", tmp_path / "raw", tmp_path / "o.h5", option, value)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_selection_types_convert():
    from fer3d_data.constants import BU3DFE_EXPRESSION_CODES

    item = prep_command.expression_item(BU3DFE_EXPRESSION_CODES)
    expression = prep_command.ListType("LIST", item, "")
    assert expression.convert("AN,happiness,ne", None, None) == ["anger", "happiness", "neutral"]
    intensity = prep_command.ListType("LIST", prep_command.intensity_item, "")
    assert intensity.convert("3, 4", None, None) == [3, 4]


def test_config_file_layers_under_flags(tmp_path, monkeypatch):
    """--config keys are option names; a flag given on the command line wins; typos are named."""
    seen = {}

    def fake_run(cfg, raw, out, selection, **kw):
        seen.update(cfg=cfg, selection=selection, **kw)
        return 0
    monkeypatch.setattr(prep_command, "run_command", fake_run)
    (tmp_path / "raw").mkdir()
    conf = tmp_path / "prep.yaml"
    conf.write_text("image_size: 64\nsmoothness: 2.5\npose: false\nintensities: '3,4'\n"
                    "workers: 2\n")
    r = invoke("bu3dfe", tmp_path / "raw", tmp_path / "o.h5", "--config", conf, "--size", "224")
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.image_size, cfg.smoothness, cfg.pose) == (224, 2.5, False)
    assert seen["selection"]["intensities"] == [3, 4] and seen["workers"] == 2
    # the /config a shard stores (inspect --json) is itself a valid --config file
    conf = tmp_path / "shard_config.json"
    conf.write_text(json.dumps(PrepConfig(dataset="bu3dfe", smoothness=3.0, points=16).to_dict()))
    assert invoke("bu3dfe", tmp_path / "raw", tmp_path / "o.h5", "--config", conf).exit_code == 0
    assert seen["cfg"] == PrepConfig(dataset="bu3dfe", smoothness=3.0, points=16)
    conf = tmp_path / "prep.yaml"
    conf.write_text("smoothnes: 2\n")
    r = invoke("bu3dfe", tmp_path / "raw", tmp_path / "o.h5", "--config", conf)
    assert r.exit_code == 2 and "did you mean 'smoothness'" in r.output
    conf.write_text("intensities: '3,4'\n")  # a BU-3DFE option is unknown to bosphorus
    r = invoke("bosphorus", tmp_path / "raw", tmp_path / "o.h5", "--config", conf)
    assert r.exit_code == 2 and "unknown option 'intensities'" in r.output


def test_inspect_prints_subjects_and_config(tmp_path):
    from test_shards import write_shard

    path = write_shard(tmp_path / "a.h5", n=9, errors=[("x.wrl", "read", "bad")])
    r = invoke("inspect", path, "--errors")
    assert r.exit_code == 0, r.output
    assert "9 samples of 2 subjects" in r.output
    assert "subjects:   F0000 7, F0001 2" in r.output
    assert "config:" in r.output and "smoothness=1.0" in r.output and "image_size=32" in r.output
    assert "[read] x.wrl: bad" in r.output
    assert json.loads(invoke("inspect", path, "--json").output)["by_subject"] == {"F0000": 7,
                                                                                  "F0001": 2}


def test_run_prep_failures_become_error_rows(tmp_path, monkeypatch):
    recs = records(10, tmp_path / "raw")
    fail = {recs[2].scan_id: ScanError("gridfit", "singular system"),
            recs[5].scan_id: RawFormatError("x.wrl", "coordIndex refers to vertex 9"),
            recs[7].scan_id: ZeroDivisionError("division by zero")}
    monkeypatch.setattr(runner, "process_scan", fake_process_scan(fail))
    out = tmp_path / "out.h5"
    summary = run_prep(recs, out, PrepConfig(image_size=S), workers=1, progress=False,
                       raw_root=tmp_path / "raw")
    assert (summary.written, summary.skipped, summary.failed) == (7, 0, 3)
    assert summary.failed_by_step == {"gridfit": 1, "read": 1, "process": 1}
    assert summary.exit_code == 0
    assert summary.line().startswith("written 7, skipped 0, failed 3 (")
    with shards.open_shard(out) as shard:
        assert len(shard) == 7
        assert shard.index["sample_id"].tolist() == [r.scan_id for i,
                                                     r in enumerate(recs) if i not in (2, 5, 7)]
        # relative to raw_root
        assert shard.index["source"][0] == f"F0000/{recs[0].scan_id}_F3D.wrl"
        errors = {e["source"]: (e["step"], e["message"]) for e in shard.errors()}
    assert errors[f"F0000/{recs[2].scan_id}_F3D.wrl"] == ("gridfit", "singular system")
    assert errors[f"F0000/{recs[5].scan_id}_F3D.wrl"] == ("read",
                                                          "x.wrl: coordIndex refers to vertex 9")
    step, message = errors[f"F0001/{recs[7].scan_id}_F3D.wrl"]
    assert step == "process"
    assert message.startswith("ZeroDivisionError: division by zero (at test_cli.py:")
    # strict: same failures -> exit 1; rerun resumes (7 skipped) and retries the 3 failures
    monkeypatch.setattr(runner, "process_scan",
                        fake_process_scan({recs[2].scan_id: ScanError("pose", "x")}))
    again = run_prep(recs, out, PrepConfig(image_size=S), workers=0, strict=True, progress=False,
                     raw_root=tmp_path / "raw")
    assert (again.written, again.skipped, again.failed_by_step) == (2, 7, {"pose": 1})
    assert again.exit_code == 1
    with shards.open_shard(out) as shard:
        assert len(shard) == 9
        assert [(e["step"], e["message"]) for e in shard.errors()] == [("pose", "x")]
    assert shards.verify(out) == []


def test_run_prep_nothing_written_exits_1(tmp_path, monkeypatch):
    recs = records(3, tmp_path)
    monkeypatch.setattr(runner, "process_scan",
                        fake_process_scan({r.scan_id: ScanError("read", "no mesh") for r in recs}))
    summary = run_prep(recs, tmp_path / "out.h5", PrepConfig(image_size=S), workers=1,
                       progress=False)
    assert summary.n_samples == 0 and summary.exit_code == 1
    assert summary.failed_by_step == {"read": 3}


def test_run_prep_rejects_wrong_shapes(tmp_path, monkeypatch):
    recs = records(2, tmp_path)

    def bad(record, cfg):
        return fake_sample(0, size=S + 2)
    monkeypatch.setattr(runner, "process_scan", bad)
    summary = run_prep(recs, tmp_path / "out.h5", PrepConfig(image_size=S), workers=1,
                       progress=False)
    assert summary.failed_by_step == {"sample": 2}
    assert ("texture has shape (34, 34, 3) and dtype uint8, the shard stores (32, 32, 3) uint8"
            in summary.failures[0][2])


def test_run_prep_interrupt_keeps_tmp_and_resumes(tmp_path, monkeypatch):
    recs = records(6, tmp_path)
    good = fake_process_scan({})

    def interrupted(record, cfg):
        if record.scan_id == recs[4].scan_id:
            raise KeyboardInterrupt
        return good(record, cfg)
    monkeypatch.setattr(runner, "process_scan", interrupted)
    out = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        run_prep(recs, out, PrepConfig(image_size=S), workers=1, progress=False)
    assert shards.tmp_path(out).exists() and not out.exists()
    monkeypatch.setattr(runner, "process_scan", good)
    summary = run_prep(recs, out, PrepConfig(image_size=S), workers=1, progress=False)
    assert (summary.written, summary.skipped) == (2, 4)
    with shards.open_shard(out) as shard:
        assert shard.index["sample_id"].tolist() == [r.scan_id for r in recs]


def test_run_prep_parallel_pool(tmp_path):
    """Real spawn-started workers and the real process_scan: scans without files all fail."""
    recs = records(3, tmp_path)
    summary = run_prep(recs, tmp_path / "out.h5", PrepConfig(image_size=S), workers=2,
                       progress=False,
                       raw_root=tmp_path)
    assert (summary.written, summary.failed, summary.n_samples, summary.exit_code) == (0, 3, 0, 1)
    assert sorted(source for source, _, _ in summary.failures) == sorted(
        f"{r.subject}/{r.scan_id}_F3D.wrl" for r in recs)


def crash_on_fear(record, cfg):
    """Top-level (spawn workers import it): kills its worker process on the fear scan."""
    if record.expression == "fear":
        os._exit(7)
    return ("ok", record.scan_id)


def test_worker_crash_is_isolated_to_its_scan(tmp_path):
    recs = records(5, tmp_path)
    results = list(runner._results_parallel(recs, PrepConfig(image_size=S), 2, fn=crash_on_fear))
    assert sorted(r.scan_id for r, _ in results) == sorted(r.scan_id for r in recs)  # each once
    by_id = {r.scan_id: res for r, res in results}
    assert len(by_id) == 5
    assert by_id[recs[2].scan_id] == ("error", "worker",
                                      "worker process died while processing this scan")
    assert all(by_id[r.scan_id] == ("ok", r.scan_id) for i, r in enumerate(recs) if i != 2)


def raw_tree(root: Path, n: int) -> Path:
    """Empty files named as BU-3DFE scans of fake_sample(0..n-1): enough for the walker."""
    for i in range(n):
        sid = fake_sample(i).sample_id
        folder = root / sid[:5]
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in ("_F3D.wrl", "_F3D.bnd", "_F3D.bmp"):
            (folder / f"{sid}{suffix}").write_bytes(b"")
    return root


def test_cli_end_to_end_with_stand_in_steps(tmp_path, monkeypatch, capsys):
    raw = raw_tree(tmp_path / "raw", 14)
    fail = {fake_sample(3).sample_id: ScanError("gridfit", "singular")}
    monkeypatch.setattr(runner, "process_scan", fake_process_scan(fail))
    out = tmp_path / "out.h5"
    common = ["--size", str(S), "--workers", "1", "--quiet"]
    assert cli.main(["bu3dfe", str(raw), str(out), *common, "--subjects", "F0000",
                     "--expressions", "AN,DI,FE,HA"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"written 3, skipped 0, failed 1 (gridfit 1) -> {out} (3 samples)")
    # more subjects on the same shard resume it; --strict turns the old failure into exit 1
    assert cli.main(["bu3dfe", str(raw), str(out), *common, "--strict"]) == 1
    assert capsys.readouterr().out.startswith("written 10, skipped 3, failed 1 (gridfit 1)")
    assert shards.inspect(out)["n_samples"] == 13
    # --shard i/n parts merge into the same set of samples
    parts = [tmp_path / f"part{i}.h5" for i in range(2)]
    for i, part in enumerate(parts):
        assert cli.main(["bu3dfe", str(raw), str(part), *common, "--shard", f"{i}/2"]) == 0
    capsys.readouterr()
    assert cli.main(["merge", str(tmp_path / "merged.h5"), *map(str, parts)]) == 0
    assert "13 samples from 2 parts, 1 error rows" in capsys.readouterr().out
    assert cli.main(["verify", str(tmp_path / "merged.h5")]) == 0
    assert cli.main(["inspect", str(tmp_path / "merged.h5")]) == 0
    assert "13 samples of 2 subjects" in capsys.readouterr().out
    assert cli.main(["preview", str(out), "-o", str(tmp_path / "p.png"), "-n", "2"]) == 0
    import cv2
    img = cv2.imread(str(tmp_path / "p.png"))
    assert img.shape == (22 + 2 * (22 + 160), 4 * 160, 3)
    # another config on the existing shard: refused before any work
    assert cli.main(["bu3dfe", str(raw), str(out), *common, "--smoothness", "2"]) == 2
    assert "smoothness: 1.0 -> 2.0" in capsys.readouterr().err


def test_verify_exit_code(tmp_path, capsys):
    assert cli.main(["verify", str(tmp_path / "none.h5")]) == 1
    assert "no such shard" in capsys.readouterr().out


def test_config_round_trip_and_validation():
    cfg = PrepConfig(dataset="bosphorus", image_size=64, pose=False, landmarks="dlib")
    assert PrepConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.scheme().name == "bosphorus"
    with pytest.raises(Fer3dDataError, match="unknown preprocessing config keys"):
        PrepConfig.from_dict({"smoothnes": 2})
    with pytest.raises(Fer3dDataError, match="interp must be one of"):
        PrepConfig(interp="cubic")


def test_step_attributes_exceptions_to_their_step():
    with pytest.raises(ScanError) as e:
        with prep.step("gridfit", "F0001_AN04WH"):
            raise ValueError("singular matrix")
    assert (e.value.step, e.value.message, e.value.scan_id) == (
        "gridfit", "ValueError: singular matrix", "F0001_AN04WH")
    with pytest.raises(ScanError) as e:
        with prep.step("read"):
            raise RawFormatError("a.bnt", "file size 10, expected 18")
    assert (e.value.step, e.value.message) == ("read", "a.bnt: file size 10, expected 18")
    with pytest.raises(ScanError) as e:
        with prep.step("pose"):
            raise ScanError("nose_tip", "no nose")
    assert e.value.step == "nose_tip"  # the innermost step keeps its name
