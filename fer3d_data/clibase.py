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
import functools
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

import click

from .errors import Fer3dDataError, RawFormatError, UserError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True,
                    "max_content_width": 100}


class ProjectError(click.ClickException):
    """A UserError (fer3d_data's or fer3d's) seen by a command: printed as one line, exit 2."""

    exit_code = 2


# What to do about a system error on a path the user gave (or one derived from it).
_OS_ADVICE = {
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOENT: "check that the path and its folder exist",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder: give a file path",
    errno.EEXIST: "it exists: remove it, or choose another path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.ELOOP: "it is a loop of symbolic links: check the links",
}


def _reraise(exc: BaseException) -> None:
    """Turn the project's own errors, a full disk and a system error naming a file into a
    one-line click error; anything else (a bug) keeps its traceback."""
    if isinstance(exc, UserError):
        raise ProjectError(str(exc)) from exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" writing {exc.filename}" if exc.filename else ""
        raise ProjectError(f"no space left on device{where}; free space and rerun the same "
                           "command to resume") from exc
    if isinstance(exc, OSError) and exc.filename:
        path = exc.filename + (f" -> {exc.filename2}" if exc.filename2 else "")
        advice = _OS_ADVICE.get(exc.errno, "check the path")
        raise ProjectError(f"{path}: {exc.strerror or exc}; {advice}") from exc


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

# Largest file a person types for a command (--config, @FILE lists): genuine ones are a few
# KB, so the cap only stops /dev/zero and the like.
MAX_USER_FILE_BYTES = 2**20
# Values a config file may expand to: a flat mapping of options holds a few dozen; YAML
# aliases can make a 400-byte file expand to billions (an "alias bomb").
MAX_CONFIG_VALUES = 10_000
# Longest message about one bad value: a value is quoted, and may be huge.
MAX_MESSAGE_CHARS = 300


def read_user_file(path: str | Path, what: str) -> str:
    """The text of a file a user names, through the bounded reader of every raw file
    (regular file only, ``MAX_USER_FILE_BYTES``, a time limit): /dev/zero, a FIFO or a
    folder is a one-line Fer3dDataError naming the path and ``what`` it is."""
    from .io._common import read_bytes  # here: fer3d_data.io imports OpenCV

    try:
        data = read_bytes(path, max_bytes=MAX_USER_FILE_BYTES)
    except RawFormatError as e:
        raise Fer3dDataError(f"{path}: cannot read {what}: {e.problem}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Fer3dDataError(f"{path}: {what} is not UTF-8 text") from None


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Option values from a YAML or JSON mapping; keys may use '-' or '_'.

    A duplicate key, and YAML aliases expanding past ``MAX_CONFIG_VALUES`` values, are
    refused: the file must say one thing, in bounded work.
    """
    path = Path(path)
    text = read_user_file(path, "config file")
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        data = (json.loads(text, object_pairs_hook=_unique_keys) if kind == "JSON"
                else load_yaml(text))
    except Exception as e:  # yaml and json raise several types; all mean "not parseable"
        mark = getattr(e, "problem_mark", None)  # yaml's errors: say where, on one line
        why = f"{e.problem}, line {mark.line + 1}" if getattr(e, "problem", None) and mark else e
        raise Fer3dDataError(f"{path}: not valid {kind} ({one_line(why)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Fer3dDataError(f"{path}: a config file must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names each key once (json.loads would keep the last silently)."""
    keys = [k for k, _ in pairs]
    twice = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if twice is not None:
        raise ValueError(f"duplicate key {twice!r}")
    return dict(pairs)


def load_yaml(text: str) -> Any:
    """YAML a user wrote (config, landmark scheme), with yaml's safe types; a duplicate key
    or aliases expanding past ``MAX_CONFIG_VALUES`` values raise yaml.YAMLError."""
    return _yaml_loader()(text).get_single_data()


@functools.cache
def _yaml_loader() -> type:
    """A SafeLoader refusing duplicate keys and documents of over ``MAX_CONFIG_VALUES``
    values once aliases are expanded (counted as the nodes are composed, so an alias bomb
    is refused after reading its few hundred bytes, before anything is built)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self.expanded: dict[int, int] = {}  # id(node) -> values it stands for

        def compose_node(self, parent, index):
            node = super().compose_node(parent, index)
            if id(node) not in self.expanded:  # an alias returns its anchor, counted already
                children = (node.value if isinstance(node, yaml.SequenceNode) else
                            [n for pair in node.value for n in pair]
                            if isinstance(node, yaml.MappingNode) else [])
                self.expanded[id(node)] = 1 + sum(self.expanded[id(c)] for c in children)
                if self.expanded[id(node)] > MAX_CONFIG_VALUES:
                    raise yaml.composer.ComposerError(
                        None, None, f"expands to over {MAX_CONFIG_VALUES} values (aliases?)",
                        node.start_mark)
            return node

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base" may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str | int):
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r}", key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep)

    return Loader


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
            problems.append(one_line(f"{key}: {e.message}"))
    if problems:
        raise click.UsageError(f"{source}: " + "; ".join(problems[:10])
                               + (f"; ... ({len(problems)} in all)" if len(problems) > 10
                                  else ""), ctx=ctx)
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
        items = read_user_file(value[1:], "list file").split()
    else:
        items = value.split(",")
    return [v.strip() for v in items if v.strip()]
