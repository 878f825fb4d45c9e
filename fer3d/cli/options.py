"""Command-line options generated from the settings table, and what every fer3d command shares.

Stage: command lines (torch-free). :func:`setting_option` turns a row of
:class:`fer3d.settings.TrainConfig` into a click option: its flag, default, help and the
table's type, so fer3d-train, fer3d-eval, fer3d-reproduce and fer3d-cam share one vocabulary
(as fer3d-prep's options come from PrepConfig). Flags and ``--config`` files are checked by
those types (one message for every bad key of a file); a TrainConfig, whatever built it,
checks with the same types (:func:`fer3d.settings.check`). The shard argument and output
paths are checked here too, before a command does any work.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from fer3d import settings
from fer3d.errors import Fer3dError

_TABLE = object()  # "the settings table's default"


def setting_option(name: str, *, default=_TABLE, help: str | None = None, **kw):
    """The click option of setting ``name``: ``--name-with-dashes`` (or the table's flag),
    the table's default unless ``default`` is given (None: "not given"), its help."""
    meta = settings.FIELDS[name].metadata
    flag = meta["flag"] or "--" + name.replace("_", "-")
    value = settings.default(name) if default is _TABLE else default
    kw.setdefault("show_default", value is not None)
    text = help or meta["help"]
    if isinstance(settings.default(name), bool):  # on by default: --x/--no-x; off: a flag
        if settings.default(name):
            return click.option(f"{flag}/--no-{flag[2:]}", name, default=value, help=text, **kw)
        return click.option(flag, name, is_flag=True, default=value, help=text, **kw)
    return click.option(flag, name, type=meta["kind"], default=value, help=text, **kw)


def apply(options):
    """Decorator applying ``options`` in order (the first is listed first in --help)."""
    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


def shards_argument(**kw):
    """The SHARD.h5... argument every command shares (checked by :func:`check_shards`)."""
    return click.argument("shards", nargs=-1, type=click.Path(), metavar="SHARD.h5...", **kw)


def check_shards(paths) -> None:
    """Fer3dError naming a folder given where a shard belongs (a raw dataset, most likely)."""
    for path in paths:
        if Path(path).is_dir():
            raise Fer3dError(f"{path}: is a folder, not a shard; fer3d trains on the HDF5 "
                             f"shards fer3d-prep writes: run `fer3d-prep bu3dfe {path} OUT.h5` "
                             "(or bosphorus) first and give OUT.h5 (docs/preprocessing.md)")


def check_output_file(path, option: str) -> None:
    """Fer3dError before any work when ``path`` cannot be written as a file."""
    if path is None:
        return
    out = Path(path)
    folder = out.parent
    if out.is_dir():
        raise Fer3dError(f"{option} {out}: is a folder; give a file path")
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise Fer3dError(f"{option} {out}: its folder {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Fer3dError(f"{option} {out}: its folder {folder} is not writable")


def make_output_folder(path, option: str) -> None:
    """The output folder ``path``, created before any work; Fer3dError naming it otherwise."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise Fer3dError(f"{option} {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Fer3dError(f"{option} {out}: cannot create the folder "
                         f"({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise Fer3dError(f"{option} {out}: the folder is not writable")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def run_command(command: click.Command, argv: list[str] | None, *,
                resumable: bool = False) -> int:
    """Run a click command as a function: the exit code, errors printed as click does
    (``ctx.exit(n)`` in a command: n, which click returns outside standalone mode).

    Ctrl-C is exit 130 with one line, as for fer3d-prep; a ``resumable`` command (its run
    directory keeps finished work) says that rerunning the same command resumes.
    """
    try:
        rv = command.main(args=argv, prog_name=command.name, standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo(f"{command.name}: interrupted" + ("; finished cells are kept: rerun the "
                       "same command to resume" if resumable else ""), err=True)
            return 130
        click.echo("Aborted!", err=True)
        return 1
    return 0
