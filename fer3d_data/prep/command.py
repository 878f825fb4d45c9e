"""``fer3d-prep <dataset> RAW SHARD``: one command per registered dataset adapter.

Stage: the command line of the prep driver (click, through :mod:`fer3d_data.clibase`). Each
command is generated from its :class:`~fer3d_data.datasets.Adapter` (name, inputs,
selection filters, the PrepConfig keys it reads) and the PrepConfig table below, so adding
a dataset adds its command without touching this module. Input problems are reported
before any work as one line each (exit status 2); a run prints one summary line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click

from ..clibase import Command, StrictFloat, StrictInt, config_option, one_line, split_list
from ..datasets import ADAPTERS, Adapter, WalkOption
from ..errors import Fer3dDataError
from ..schema import CLASS_NAMES
from ..schemes import SHIPPED
from .config import CHOICES, PrepConfig
from .sanity import THRESHOLDS

PROG = "fer3d-prep"

# Help of each PrepConfig parameter; the option is --<name with dashes>, its default the
# dataclass's, its choices CHOICES.
PREP_HELP = {
    "image_size": "side S of the depth/texture grid, pixels: a multiple of 4 (training "
                  "attends with masks at S/4) in 8..1024 (memory grows with S^2)",
    "crop_radius": "crop sphere radius around the nose tip, mm; the grid spans ±radius",
    "smoothness": "gridfit smoothness",
    "interp": "gridfit data term",
    "regularizer": "gridfit regulariser",
    "pose": "rotate the cropped face to frontal before gridfit",
    "outlier_nb_neighbors": "statistical outlier removal: neighbours",
    "outlier_std_ratio": "statistical outlier removal: standard deviations",
    "spike_radius": "spike removal: neighbourhood radius, mm",
    "spike_max_dev": "spike removal: largest distance from the local median depth, mm",
    "min_points": "fewest points left after cleaning and cropping",
    "mask_margin_px": "dilation of each salient region's hull, grid pixels",
    "landmarks": "landmarks for the masks: the scan's own, dlib's 68 points on the aligned "
                 "texture, or auto (native where present, else dlib)",
    "masks": "salient-region masks from landmarks, or none (scans without landmarks and "
             "texture; mask-attention models refuse such a shard)",
    "landmark_scheme": f"scheme of the landmark files: {', '.join(SHIPPED)} or a .yaml file "
                       "naming the eye/nose/mouth points (docs/datasets.md)",
    "units": "unit of the raw coordinates",
    "up": "raw axis pointing up the face",
    "front": "raw axis pointing from the face toward the camera",
    "compression": "shard compression",
    "compression_level": "gzip level 0-9",
    "depth_dtype": "stored /depth dtype; float16 halves its size (error: docs/shards.md)",
    "points": "store /points: this many points on the frontal surface per sample (0: none)",
    "point_sampling": "fps: farthest-point (evenly spread); uniform: random by area",
    "allow_outside_textures": "accept a texture a scan file names outside the scan's folder",
    "max_image_pixels": "refuse texture images with more pixels (decompression bombs)",
    "scan_timeout": "seconds one scan may take before it becomes a 'timeout' error row",
}
PREP_HELP.update({k: f"sanity: {what}" for k, (_, what) in THRESHOLDS.items()})
_ALIASES = {"image_size": ("--size",)}
_SHOWN = {"landmark_scheme": "the dataset's own"}
EXECUTORS = ("local", "ray")


def prep_options(names: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()):
    """Decorator: one option per PrepConfig parameter (all but ``dataset`` and ``skip``, or
    only ``names``)."""
    defaults = PrepConfig()

    def decorate(f):
        for field in reversed(dataclasses.fields(PrepConfig)):
            name = field.name
            if name == "dataset" or name in skip or (names is not None and name not in names):
                continue
            flag, default = "--" + name.replace("_", "-"), getattr(defaults, name)
            kw = {"default": default, "help": PREP_HELP[name],
                  "show_default": _SHOWN.get(name, True)}
            if isinstance(default, bool):  # on by default: --x/--no-x; off: a plain flag
                decls = [f"{flag}/--no-{flag[2:]}"] if default else [flag]
                kw["is_flag"] = True
            else:
                decls = [flag, *_ALIASES.get(name, ())]
                kw["type"] = (click.Choice(CHOICES[name]) if name in CHOICES
                              else StrictInt() if isinstance(default, int)
                              else StrictFloat() if isinstance(default, float) else str)
            f = click.option(*decls, name, **kw)(f)
        return f
    return decorate


class ListType(click.ParamType):
    """Comma-separated items (or @file), each mapped through ``item``; None stays None."""

    def __init__(self, name: str, item, hint: str):
        self.name, self.item, self.hint = name, item, hint

    def convert(self, value, param, ctx):
        if value is None:
            return None
        try:  # a list comes from a config file (or is converted already: items convert again)
            items = value if isinstance(value, list) else split_list(str(value))
            if not all(isinstance(v, str | int) for v in items):
                raise ValueError("a list of plain values is expected")
            return [self.item(str(v)) for v in items]
        except (ValueError, KeyError, Fer3dDataError) as e:
            self.fail(one_line(f"{value!r}: {e}; {self.hint}"), param, ctx)


class _Parsed(click.ParamType):
    """A text option checked by a WalkOption's ``parse``."""

    name = "TEXT"

    def __init__(self, parse):
        self.parse = parse

    def convert(self, value, param, ctx):
        if value is None or not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as e:
            self.fail(f"{value!r}: {e}", param, ctx)


def expression_item(codes: dict):
    def item(v: str) -> str:
        name = codes.get(v.upper(), v.lower())
        if name not in CLASS_NAMES:
            raise ValueError(f"unknown {v!r}")
        return name
    return item


def intensity_item(v: str) -> int:
    if int(v) not in range(5):
        raise ValueError(f"{v} is not in 0-4")
    return int(v)


class ShardPart(click.ParamType):
    name = "I/N"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, tuple):
            return value
        try:
            i, n = (int(v) for v in str(value).split("/"))
        except ValueError:
            self.fail(f"expected I/N such as 0/4 (I counts from 0), got {value!r}", param, ctx)
        if not (n >= 1 and 0 <= i < n):
            self.fail(f"need 0 <= I < N: I counts from 0, so the parts of {max(n, 1)} are "
                      f"0/{max(n, 1)} to {max(n, 1) - 1}/{max(n, 1)}; got {value!r}", param, ctx)
        return i, n


def _selection_options(a: Adapter) -> list:
    """--subjects, --expressions, --intensities: the select() filters ``a`` offers."""
    codes = a.expression_codes
    names = ",".join(CLASS_NAMES) + (f" or codes {','.join(codes)}" if codes else "")
    table = {
        "subjects": click.option("--subjects", type=ListType("LIST", str, "subject ids"),
                                 help="comma-separated subject ids (or @file); default: all"),
        "expressions": click.option("--expressions",
                                    type=ListType("LIST", expression_item(codes), f"use {names}"),
                                    help=f"comma-separated {names}; default: all"),
        "intensities": click.option("--intensities",
                                    type=ListType("LIST", intensity_item, "use 0-4"),
                                    help="comma-separated intensities 0-4 (e.g. 3,4); "
                                         "default: all"),
    }
    return [table[name] for name in a.selection]


def _walk_option(o: WalkOption):
    kind = (click.Path(exists=True, dir_okay=False, path_type=Path) if o.kind == "file"
            else _Parsed(o.parse) if o.parse else str)
    return click.option(f"--{o.name.replace('_', '-')}", o.name, type=kind, required=o.required,
                        default=o.default, help=o.help)


def _run_options() -> list:
    return [
        click.option("--shard", "part", type=ShardPart(),
                     help="process only part I of N of the selection (cluster array jobs); I "
                          "counts from 0: the parts of 4 are 0/4, 1/4, 2/4, 3/4; join them "
                          "with `fer3d-prep merge`"),
        click.option("--workers", type=StrictInt(min=0), default=None, show_default="all cores",
                     help="worker processes (with --executor ray: tasks in flight); 0 or 1 "
                          "runs in this process"),
        click.option("--executor", type=click.Choice(EXECUTORS), default="local",
                     help="local: this machine's processes; ray: tasks on the Ray cluster at "
                          "RAY_ADDRESS (a local one without it), one shard written here"),
        click.option("--strict", is_flag=True, help="exit 1 if any scan failed"),
        click.option("--overwrite", is_flag=True, help="replace an existing SHARD (or SHARD.tmp) "
                                                       "instead of resuming it"),
        click.option("--quiet", is_flag=True, help="no progress bar; only the summary line"),
    ]


def prep_command(a: Adapter) -> click.Command:
    """The ``fer3d-prep <a.name> RAW SHARD`` command of adapter ``a``."""
    own = {k for other in ADAPTERS.values() for k in other.config_keys} - set(a.config_keys)
    inputs = {o.name for o in a.options}

    @click.pass_context
    def command(ctx, raw, shard, part, workers, executor, strict, overwrite, quiet, **params):
        selection = {k: params.pop(k) for k in a.selection}
        walk = {k: params.pop(k) for k in inputs}
        cfg = PrepConfig(dataset=a.name, **params)
        ctx.exit(run_command(cfg, raw, shard, selection, walk=walk, part=part, workers=workers,
                             executor=executor, strict=strict, overwrite=overwrite, quiet=quiet))

    for option in reversed([
        # a shard's /config is a valid --config file; other adapters' keys do not apply here
        config_option(ignore=("dataset", *sorted(own))),
        click.argument("raw", metavar="RAW",
                       type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.argument("shard", metavar="SHARD", type=click.Path(dir_okay=False, path_type=Path)),
        *[_walk_option(o) for o in a.options],
        prep_options(skip=tuple(own)),
        *_selection_options(a),
        *_run_options(),
    ]):
        command = option(command)
    return click.command(a.name, cls=Command, help=(
        f"Preprocess the {a.title} scans under RAW ({a.example}) into the HDF5 shard "
        "SHARD.\n\n"
        "Every selected scan is cleaned, cropped, posed, gridfitted, textured, landmarked and "
        "masked (docs/preprocessing.md) in worker processes; a scan that fails becomes an /errors "
        "row and the run goes on. SHARD.tmp is renamed to SHARD when complete: rerunning the "
        "same command after Ctrl-C or a crash resumes where it stopped."))(command)


def run_command(cfg: PrepConfig, raw: Path, out: Path, selection: dict, *, walk: dict, part,
                workers, executor, strict, overwrite, quiet) -> int:
    """Walk, select, check, then run_prep; the exit status."""
    from .. import shards
    from ..datasets.select import unlabelled, walk_and_select
    from .runner import default_workers, run_prep

    check_output(out)
    if executor == "ray":  # tasks run in other folders, maybe on other nodes
        raw = raw.absolute()
    shards.preflight(out, config=cfg, landmark_scheme=cfg.scheme().name, overwrite=overwrite)
    records, chosen, names = walk_and_select(cfg.dataset, raw, selection, walk, part)
    _report_unreadable(chosen, raw)
    if not quiet:
        shown = (workers if workers is not None
                 else default_workers() if executor == "local" else "2 x cluster CPUs")
        left = sum(map(unlabelled, records))
        skipped = f" ({left} without a label left out: not expression scans)" if left else ""
        click.echo(f"{PROG} {cfg.dataset}: {len(chosen)} of {len(records)} scans selected"
                   f"{skipped}, {shown} workers ({executor}), S={cfg.image_size} -> {out}",
                   err=True)
    try:
        summary = run_prep(chosen, out, cfg, workers=workers, strict=strict, overwrite=overwrite,
                           progress=not quiet, raw_root=raw, label_names=names,
                           executor=executor)
    except KeyboardInterrupt:
        click.echo(f"{PROG}: interrupted; {shards.tmp_path(out)} kept: rerun the same command "
                   "to resume", err=True)
        return 130
    click.echo(summary.line())
    if summary.n_samples == 0:
        click.echo(f"{PROG}: error: no scan could be written; see `{PROG} inspect {out} --errors`",
                   err=True)
    return summary.exit_code


def _report_unreadable(chosen: list, raw: Path) -> None:
    """Before any work, one line per selected scan that cannot be read (its error row)."""
    from .runner import source_of

    bad = [r for r in chosen if r.problem]
    if bad:
        click.echo(f"{PROG}: {len(bad)} selected scans cannot be read; each becomes an /errors "
                   "row:", err=True)
    for r in bad:
        click.echo(f"  {source_of(r, raw)}: {r.problem}", err=True)


def check_output(out: Path) -> None:
    """An output file path whose folder exists and is writable, before any work."""
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise Fer3dDataError(f"{parent}: is a file, not a folder; check the output path {out}")
    if not parent.is_dir():
        raise Fer3dDataError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Fer3dDataError(f"output directory {parent} is not writable")
