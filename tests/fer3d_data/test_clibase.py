"""fer3d_data.clibase: config layering, strict types, one-line project errors."""

import errno
import json

import click
import pytest
from click.testing import CliRunner

from fer3d_data.clibase import Command, StrictBool, StrictInt, config_option
from fer3d_data.errors import Fer3dDataError


@click.command(cls=Command)
@config_option()
@click.option("--epochs", type=StrictInt(min=1), default=30)
@click.option("--augment", type=StrictBool(), default=True)
@click.option("--name", default="x")
@click.option("--boom", is_flag=True)
@click.option("--os-error", type=click.Choice(["named", "renamed", "unnamed"]))
def cmd(epochs, augment, name, boom, os_error):
    if boom:
        raise Fer3dDataError("bad.h5: not a shard")
    if os_error:
        names = {"named": ("/x/run",), "renamed": ("/x/a.tmp", None, "/x/a"), "unnamed": ()}
        raise OSError(errno.EACCES, "Permission denied", *names[os_error])
    click.echo(json.dumps({"epochs": epochs, "augment": augment, "name": name}))


def run(args, tmp_path=None, config=None):
    if config is not None:
        p = tmp_path / "c.json"
        p.write_text(json.dumps(config))
        args = ["--config", str(p), *args]
    return CliRunner().invoke(cmd, args)


def test_flags_win_over_config_even_when_equal_to_default(tmp_path):
    r = run(["--epochs", "30"], tmp_path, {"epochs": 5, "name": "cfg"})
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"epochs": 30, "augment": True, "name": "cfg"}


def test_config_strings_are_booleans(tmp_path):
    r = run([], tmp_path, {"augment": "false"})
    assert json.loads(r.output)["augment"] is False


@pytest.mark.parametrize("bad", [{"epochs": 1.5}, {"epochs": 0}, {"augment": "maybe"}])
def test_bad_config_values_are_one_message(tmp_path, bad):
    r = run([], tmp_path, bad)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert next(iter(bad)) in r.output


def test_every_bad_key_reported_with_did_you_mean(tmp_path):
    r = run([], tmp_path, {"epoch": 3, "augment": "maybe"})
    assert r.exit_code == 2
    assert "did you mean 'epochs'" in r.output and "augment" in r.output


def test_project_error_is_one_line_exit_2():
    r = CliRunner().invoke(cmd, ["--boom"])
    assert r.exit_code == 2 and "bad.h5: not a shard" in r.output and "Traceback" not in r.output


def test_strict_int_refuses_float_and_bool():
    t = StrictInt(min=1)
    assert t.convert("3", None, None) == 3
    for v in (1.5, True, "1.5", "x", 0):
        with pytest.raises(click.BadParameter):
            t.convert(v, None, None)


@pytest.mark.parametrize("how, line", [
    ("named", "Error: /x/run: Permission denied; check its permissions, or choose another path"),
    ("renamed", "Error: /x/a.tmp -> /x/a: Permission denied; check its permissions"),
])
def test_a_system_error_naming_a_file_is_one_line_exit_2(how, line):
    """Issue 15: an OSError on an output path (read-only run directory, a file where a folder
    should be) was a traceback, in every fer3d command."""
    r = CliRunner().invoke(cmd, ["--os-error", how])
    assert r.exit_code == 2 and r.output.startswith(line) and len(r.output.splitlines()) == 1


def test_a_system_error_naming_no_file_keeps_its_traceback():
    r = CliRunner().invoke(cmd, ["--os-error", "unnamed"])
    assert isinstance(r.exception, PermissionError) and r.exit_code == 1
