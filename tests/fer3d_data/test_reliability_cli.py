"""Issue 15, command lines: every file a command reads from a path the user gives goes
through one bounded reader, a config file says one thing in bounded work, and a system
error on an output path is one line naming it (exit 2), never a traceback."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from fer3d_data import cli

sys.path.insert(0, str(Path(__file__).parent))
from test_datasets import _as_unprivileged  # noqa: E402
from test_reliability_io import within  # noqa: E402
from test_shards import fake_sample, write_shard  # noqa: E402


def prep(tmp_path: Path, *args):
    """fer3d-prep bu3dfe on an empty raw folder (every check here comes before any work)."""
    (tmp_path / "raw").mkdir(exist_ok=True)
    return CliRunner().invoke(cli.fer3d_prep, ["bu3dfe", str(tmp_path / "raw"),
                                               str(tmp_path / "o.h5"), *map(str, args)])


def one_line_error(r, *fragments) -> str:
    """The result is exit 2 with one line of error that holds every fragment."""
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output[-2000:]
    assert len(lines) == 1 and len(lines[0]) < 600, r.output[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- config files


@pytest.mark.parametrize("name, text", [
    ("c.json", '{"smoothness": 1.0, "image_size": 32, "image_size": 64}'),
    ("c.yaml", "smoothness: 1.0\nimage_size: 32\nimage_size: 64\n"),
])
def test_a_config_key_given_twice_is_refused(tmp_path, name, text):
    """The JSON file used to keep the last value silently."""
    (tmp_path / name).write_text(text)
    one_line_error(prep(tmp_path, "--config", tmp_path / name), "duplicate key 'image_size'")


def alias_bomb(levels: int) -> str:
    """A YAML alias bomb: each level lists the previous one 9 times (9**levels values)."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nsmoothness: *a{levels - 1}\n"


@pytest.mark.parametrize("levels", [6, 10])
def test_a_yaml_alias_bomb_is_refused_after_reading_it(tmp_path, levels):
    """400 bytes took 38 s and then MemoryError, or printed a 312 MB message."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(levels))
    assert bomb.stat().st_size < 500
    with within(10):
        r = prep(tmp_path, "--config", bomb)
    one_line_error(r, "not valid YAML (expands to over 10000 values (aliases?), line")


def test_a_landmark_scheme_file_is_read_the_same_way(tmp_path):
    """A scheme YAML (--landmark-scheme) is a file the user names too."""
    from fer3d_data.errors import Fer3dDataError
    from fer3d_data.schemes import get_scheme

    bomb = tmp_path / "scheme.yaml"
    bomb.write_text(alias_bomb(6).replace("smoothness:", "points:"))
    with within(10), pytest.raises(Fer3dDataError) as e:
        get_scheme(str(bomb))
    assert "expands to over 10000 values" in str(e.value) and "\n" not in str(e.value)


def test_a_nested_list_in_a_config_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text("subjects: [[F0001, F0002]]\nexpressions: [anger]\n")
    one_line_error(prep(tmp_path, "--config", tmp_path / "c.yaml"),
                   "a list of plain values is expected")


def test_yaml_merge_keys_still_override(tmp_path):
    from fer3d_data.clibase import read_config_file

    (tmp_path / "d.yaml").write_text("<<: {smoothness: 2.0, pose: false}\nsmoothness: 3.0\n")
    assert read_config_file(tmp_path / "d.yaml") == {"smoothness": 3.0, "pose": False}


# ---------------------------------------------------------------- files the user names


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("option", ["--config", "--subjects"])
@pytest.mark.parametrize("kind, problem", [
    ("fifo", "not a regular file (a FIFO)"),
    ("/dev/zero", "not a regular file (a character device)"),
    ("folder", "not a regular file (a folder)"),  # --config: click's own one-line check
    ("big", "1048579 bytes, over the limit of 1048576 for this file"),
])
def test_files_the_user_names_are_read_bounded(tmp_path, fifo, option, kind, problem):
    """--config or --subjects @FILE on a FIFO hung; on /dev/zero they filled memory."""
    path = {"fifo": fifo, "/dev/zero": Path("/dev/zero"), "folder": tmp_path / "raw",
            "big": tmp_path / "big.yaml"}[kind]
    (tmp_path / "raw").mkdir()
    (tmp_path / "big.yaml").write_text("# " + "x" * 2**20 + "\n")
    with within(10):
        r = prep(tmp_path, option, path if option == "--config" else f"@{path}")
    if option == "--config" and kind == "folder":
        one_line_error(r, f"File '{path}' is a directory")
        return
    what = "config file" if option == "--config" else "list file"
    one_line_error(r, f"{path}: cannot read {what}: {problem}")


def test_a_read_stops_at_its_time_limit(tmp_path, monkeypatch):
    """A file system that delivers slowly (a stalled mount) ends in a one-line error."""
    from fer3d_data.io import _common

    clock = iter(range(0, 1000, 7))  # every look at the clock: 7 s later
    monkeypatch.setattr(_common.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(_common, "_CHUNK", 16)
    (tmp_path / "c.yaml").write_text("smoothness: 2.0\n" * 10)
    with pytest.raises(_common.RawFormatError, match="reading took over 20 s"):
        _common.read_bytes(tmp_path / "c.yaml", timeout_s=20)


def test_a_subject_list_file_is_still_read(tmp_path):
    (tmp_path / "subjects.txt").write_text("F0001\nF0002\n")
    from fer3d_data.clibase import split_list

    assert split_list(f"@{tmp_path / 'subjects.txt'}") == ["F0001", "F0002"]


# ---------------------------------------------------------------- --shard I/N


def test_shard_says_that_i_counts_from_0(tmp_path):
    r = CliRunner().invoke(cli.fer3d_prep, ["bu3dfe", "--help"])
    assert "I counts from 0: the parts of 4 are 0/4, 1/4, 2/4, 3/4" in " ".join(r.output.split())
    one_line_error(prep(tmp_path, "--shard", "4/4"),
                   "I counts from 0, so the parts of 4 are 0/4 to 3/4; got '4/4'")
    one_line_error(prep(tmp_path, "--shard", "1"), "such as 0/4 (I counts from 0)")


# ---------------------------------------------------------------- output paths


def shard(tmp_path: Path) -> Path:
    part = tmp_path / "part.h5"
    return part if part.exists() else write_shard(part, n=2)


def merge(tmp_path: Path, out: Path, *extra):
    return CliRunner().invoke(cli.fer3d_prep, ["merge", str(out), str(shard(tmp_path)),
                                               *extra])


def export(tmp_path: Path, out: Path):
    return CliRunner().invoke(cli.fer3d_prep, ["export", str(shard(tmp_path)),
                                               fake_sample(0).sample_id, "-o", str(out)])


@pytest.mark.parametrize("command", [merge, export])
def test_an_output_path_that_cannot_be_written_is_one_line(tmp_path, command):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder.ply").mkdir()
    name = "out.h5" if command is merge else "face.ply"
    one_line_error(command(tmp_path, tmp_path / "missing" / name),
                   f"output directory {tmp_path / 'missing'} does not exist")
    one_line_error(command(tmp_path, tmp_path / "file" / name),
                   f"{tmp_path / 'file'}: is a file, not a folder")
    one_line_error(command(tmp_path, tmp_path / "folder.ply"),  # click's own check
                   f"File '{tmp_path / 'folder.ply'}' is a directory")


@pytest.mark.parametrize("command", [merge, export])
def test_a_read_only_output_is_one_line(command):
    """As a user who may not write there (root may write anywhere)."""
    # pytest's tmp_path lies in a folder only root may enter: use a traversable one
    root = Path(tempfile.mkdtemp(prefix="fer3d-readonly-"))
    try:
        root.chmod(0o755)
        name = "out.h5" if command is merge else "face.ply"
        shard(root).chmod(0o444)
        for folder, mode in (("ro", 0o555), ("rw", 0o777)):
            (root / folder).mkdir()
            (root / folder).chmod(mode)
        (root / "rw" / name).write_text("")
        (root / "rw" / name).chmod(0o444)

        # once as root: the child may not read the modules this imports (root's Python)
        assert command(root, root / f"warm-{name}").exit_code == 0

        def check():
            one_line_error(command(root, root / "ro" / name),
                           f"output directory {root / 'ro'} is not writable")
            if command is export:  # the folder is writable, the file is not: the system says
                one_line_error(command(root, root / "rw" / name),
                               f"{root / 'rw' / name}: Permission denied; check its "
                               "permissions, or choose another path")
        _as_unprivileged(check)
    finally:
        shutil.rmtree(root)
