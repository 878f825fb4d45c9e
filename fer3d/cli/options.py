"""Command-line options generated from the settings table, and what every fer3d command shares.

Stage: command lines (torch-free). :func:`setting_option` turns a row of
:class:`fer3d.settings.TrainConfig` into a click option: its flag, default, help and the
table's type, so fer3d-train, fer3d-eval, fer3d-reproduce and fer3d-cam share one vocabulary
(as fer3d-prep's options come from PrepConfig). Flags and ``--config`` files are checked by
those types (one message for every bad key of a file); a TrainConfig, whatever built it,
checks with the same types (:func:`fer3d.settings.check`).
"""

from __future__ import annotations

import logging
import sys

import click

from fer3d import settings

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


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def run_command(command: click.Command, argv: list[str] | None) -> int:
    """Run a click command as a function: the exit code, errors printed as click does."""
    try:
        command.main(args=argv, prog_name=command.name, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return 0
