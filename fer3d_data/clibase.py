"""Shared click plumbing of every fer3d command line (fer3d-prep, fer3d-train, ...).

Stage: command lines. One way of layering a config file (click's ``default_map``: defaults <
``--config FILE`` < flags given on the command line), one way of reporting a user's mistake
(one line, exit 2) while a bug keeps its traceback, and strict parameter types that turn
``epochs: 1.5`` or ``augment: "maybe"`` into a message instead of a silent cast. Never
imports torch, so ``--help`` works in an installation without it.
"""

from __future__ import annotations

import difflib
import errno
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

import click

from .errors import Fer3dDataError, UserError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True,
                    "max_content_width": 100}


class ProjectError(click.ClickException):
    """A UserError (fer3d_data's or fer3d's) seen by a command: printed as one line, exit 2."""

    exit_code = 2


def _reraise(exc: BaseException) -> None:
    """Turn the project's own errors and a full disk into a one-line click error."""
    if isinstance(exc, UserError):
        raise ProjectError(str(exc)) from exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        raise ProjectError(f"no space left on device{where}; free space and rerun the same "
                           "command to resume") from exc


class Command(click.Command):
    """click.Command whose project errors print as one line (tests see the same via CliRunner)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("context_settings", dict(CONTEXT_SETTINGS))
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, OSError) as exc:
            _reraise(exc)
            raise


class Group(click.Group):
    """click.Group whose subcommands are :class:`Command` by default."""

    command_class = Command
    group_class = type

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("context_settings", dict(CONTEXT_SETTINGS))
        super().__init__(*args, **kwargs)


# --------------------------------------------------------------------------- strict types

class StrictInt(click.ParamType):
    """An integer, optionally bounded; ``1.5``, ``"1.5"`` and ``True`` are refused."""

    name = "integer"

    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max

    def convert(self, value, param, ctx):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            self.fail(f"{value!r} is not an integer", param, ctx)
        try:
            out = int(value) if not isinstance(value, str) else int(value.strip(), 10)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)
        if self.min is not None and out < self.min:
            self.fail(f"{out} is smaller than the minimum {self.min}", param, ctx)
        if self.max is not None and out > self.max:
            self.fail(f"{out} is larger than the maximum {self.max}", param, ctx)
        return out

    def get_metavar(self, param, ctx=None):  # click 8.2+ passes ctx
        lo = "" if self.min is None else str(self.min)
        hi = "" if self.max is None else str(self.max)
        return f"INTEGER {lo}..{hi}" if (lo or hi) else "INTEGER"


class StrictFloat(click.ParamType):
    """A finite float, optionally bounded (``min_open``: strictly greater than ``min``)."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False):
        self.min, self.max, self.min_open = min, max, min_open

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number", param, ctx)
        try:
            out = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if out != out or out in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not finite", param, ctx)
        if self.min is not None and (out < self.min or (self.min_open and out == self.min)):
            self.fail(f"{out} must be {'>' if self.min_open else '>='} {self.min}", param, ctx)
        if self.max is not None and out > self.max:
            self.fail(f"{out} must be <= {self.max}", param, ctx)
        return out


class StrictBool(click.ParamType):
    """true/false, yes/no, on/off, 1/0 (any case); anything else is refused."""

    name = "boolean"
    _TRUE = {"true", "yes", "on", "1", "y", "t"}
    _FALSE = {"false", "no", "off", "0", "n", "f"}

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in self._TRUE:
            return True
        if text in self._FALSE:
            return False
        self.fail(f"{value!r} is not a boolean (use true or false)", param, ctx)


# --------------------------------------------------------------------------- config files

def read_config_file(path: str | Path) -> dict[str, Any]:
    """Option values from a YAML or JSON mapping; keys may use '-' or '_'."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise Fer3dDataError(f"{path}: cannot read config file ({e})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # yaml and json raise several types; all mean "not parseable"
        raise Fer3dDataError(f"{path}: not valid "
                             f"{path.suffix.lstrip('.') or 'YAML'} ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Fer3dDataError(f"{path}: a config file must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def apply_config(ctx: click.Context, values: dict[str, Any], source: str,
                 ignore: tuple[str, ...] = ()) -> None:
    """Validate ``values`` against ``ctx.command``'s options and layer them as defaults.

    Every bad key is reported at once (unknown names with a "did you mean"); values go
    through each option's own type, so a config file is checked exactly like a flag.
    """
    params = {p.name: p for p in ctx.command.params
              if isinstance(p, click.Option) and p.name != "config" and not p.hidden}
    problems, accepted = [], {}
    for key, value in values.items():
        if key in ignore:
            continue
        param = params.get(key)
        if param is None:
            near = difflib.get_close_matches(key, params, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"unknown option {key!r}{hint}")
            continue
        try:
            if isinstance(param, click.Option) and param.is_flag and not param.is_bool_flag:
                accepted[key] = value
            else:
                accepted[key] = param.type_cast_value(ctx, value)
        except click.BadParameter as e:
            problems.append(f"{key}: {e.message}")
    if problems:
        raise click.UsageError(f"{source}: " + "; ".join(problems), ctx=ctx)
    ctx.default_map = {**(ctx.default_map or {}), **accepted}


def config_option(help: str = "YAML or JSON file of option values (keys = option names); "
                              "options given on the command line win",
                  ignore: tuple[str, ...] = ()) -> Callable:
    """An eager ``--config FILE`` option that layers the file under the command-line flags."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None):
        if value is not None and not ctx.resilient_parsing:
            try:
                values = read_config_file(value)
            except Fer3dDataError as e:
                raise click.BadParameter(str(e), ctx=ctx, param=param) from None
            apply_config(ctx, values, value, ignore=ignore)
        return value

    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True,
                        expose_value=False, callback=callback, metavar="FILE", help=help)


# --------------------------------------------------------------------------- optional extras

def require(module: str, extra: str, what: str) -> None:
    """Fail with the extra to install when an optional dependency is missing."""
    if importlib.util.find_spec(module) is None:
        raise Fer3dDataError(f"{what} needs the '{module}' package: pip install 'fer3d[{extra}]'")


def split_list(value: str | None) -> list[str] | None:
    """``a,b,c`` or ``@file`` (one item per line or whitespace) -> items; None stays None."""
    if value is None:
        return None
    if value.startswith("@"):
        try:
            items = Path(value[1:]).read_text().split()
        except OSError as e:
            raise Fer3dDataError(f"{value[1:]}: cannot read list file ({e.strerror})") from None
    else:
        items = value.split(",")
    return [v.strip() for v in items if v.strip()]
