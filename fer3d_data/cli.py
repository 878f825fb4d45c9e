"""``fer3d-prep``: raw BU-3DFE / Bosphorus trees -> HDF5 shards, and tools for shards.

Stage: the command line of fer3d_data (click, through :mod:`fer3d_data.clibase`). Each
command parses its options and calls one library function, so every command is callable
from Python and tests. Input problems are reported before any work starts, as one line
with exit status 2; a run prints one summary line at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap
from pathlib import Path

import click

from .clibase import Group, StrictFloat, StrictInt, config_option, one_line, split_list
from .constants import BU3DFE_EXPRESSION_CODES
from .errors import Fer3dDataError
from .prep.config import CHOICES, PrepConfig
from .prep.sanity import THRESHOLDS
from .schema import CLASS_NAMES
from .synth.command import synth_group

PROG = "fer3d-prep"
_DATASET_HINTS = {
    "bu3dfe": "expected BU-3DFE files such as F0001/F0001_AN01WH_F3D.wrl (+ .bnd, .bmp)",
    "bosphorus": "expected Bosphorus files such as bs000/bs000_E_ANGER_0.bnt (+ .lm3, .png)",
}
_TITLES = {"bu3dfe": "BU-3DFE", "bosphorus": "Bosphorus"}

# Help of each PrepConfig parameter; the option is --<name with dashes>, its default the
# dataclass's, its choices CHOICES.
_PREP_HELP = {
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
    "compression": "shard compression",
    "compression_level": "gzip level 0-9",
    "depth_dtype": "stored /depth dtype; float16 halves its size (error: docs/shards.md)",
    "points": "store /points: this many points on the frontal surface per sample (0: none)",
    "point_sampling": "fps: farthest-point (evenly spread); uniform: random by area",
    "allow_outside_textures": "accept a texture a scan file names outside the scan's folder",
    "max_image_pixels": "refuse texture images with more pixels (decompression bombs)",
    "scan_timeout": "seconds one scan may take before it becomes a 'timeout' error row",
}
_PREP_HELP.update({k: f"sanity: {what}" for k, (_, what) in THRESHOLDS.items()})
_ALIASES = {"image_size": ("--size",)}


def _prep_options(names: tuple[str, ...] | None = None):
    """Decorator: one option per PrepConfig parameter (all but ``dataset``, or ``names``)."""
    defaults = PrepConfig()

    def decorate(f):
        for field in reversed(dataclasses.fields(PrepConfig)):
            name = field.name
            if name == "dataset" or (names is not None and name not in names):
                continue
            flag, default = "--" + name.replace("_", "-"), getattr(defaults, name)
            kw = {"default": default, "help": _PREP_HELP[name]}
            if isinstance(default, bool):  # on by default: --x/--no-x; off: a plain flag
                decls = [f"{flag}/--no-{flag[2:]}"] if default else [flag]
                kw["is_flag"] = True
            else:
                decls = [flag, *_ALIASES.get(name, ())]
                kw["type"] = (click.Choice(CHOICES[name]) if name in CHOICES
                              else StrictInt() if isinstance(default, int) else StrictFloat())
            f = click.option(*decls, name, **kw)(f)
        return f
    return decorate


# The parameters of the steps up to the frontal surface: what `export` of a raw scan uses.
_SURFACE_PARAMS = ("crop_radius", "pose", "outlier_nb_neighbors", "outlier_std_ratio",
                   "spike_radius",
                   "spike_max_dev", "min_points", "allow_outside_textures", "max_image_pixels")


class _ListType(click.ParamType):
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


def _expression(codes: dict):
    def item(v: str) -> str:
        name = codes.get(v.upper(), v.lower())
        if name not in CLASS_NAMES:
            raise ValueError(f"unknown {v!r}")
        return name
    return item


def _intensity(v: str) -> int:
    if int(v) not in range(5):
        raise ValueError(f"{v} is not in 0-4")
    return int(v)


class _ShardPart(click.ParamType):
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


@click.group(cls=Group, name=PROG)
def fer3d_prep():
    """Turn raw BU-3DFE / Bosphorus scans into documented HDF5 shards (docs/shards.md), and
    inspect, verify, preview, merge or export them."""


fer3d_prep.add_command(synth_group)


def _prep_command(dataset: str):
    title = _TITLES[dataset]
    codes = BU3DFE_EXPRESSION_CODES if dataset == "bu3dfe" else {}
    names = ",".join(CLASS_NAMES) + (f" or codes {','.join(codes)}" if codes else "")
    selection = [
        click.option("--subjects", type=_ListType("LIST", str, "subject ids"),
                     help="comma-separated subject ids (or @file); default: all"),
        click.option("--expressions", type=_ListType("LIST", _expression(codes), f"use {names}"),
                     help=f"comma-separated {names}; default: all"),
    ]
    if dataset == "bu3dfe":
        intensities = _ListType("LIST", _intensity, "use 0-4")
        selection.append(click.option("--intensities", type=intensities,
                                      help="comma-separated intensities 0-4 (e.g. 3,4); "
                                           "default: all"))

    @click.pass_context
    def command(ctx, raw, shard, subjects, expressions, part, workers, strict, overwrite, quiet,
                intensities=None, **params):
        cfg = PrepConfig(dataset=dataset, **params)
        code = _run_prep(cfg, raw, shard, dict(subjects=subjects, expressions=expressions,
                                               intensities=intensities),
                         part=part, workers=workers, strict=strict, overwrite=overwrite,
                         quiet=quiet)
        ctx.exit(code)

    for option in reversed([
        config_option(ignore=("dataset",)),  # a shard's /config is a valid --config file
        click.argument("raw", metavar="RAW",
                       type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.argument("shard", metavar="SHARD", type=click.Path(dir_okay=False, path_type=Path)),
        _prep_options(),
        *selection,
        click.option("--shard", "part", type=_ShardPart(),
                     help="process only part I of N of the selection (cluster array jobs); I "
                          "counts from 0: the parts of 4 are 0/4, 1/4, 2/4, 3/4; join them "
                          "with `fer3d-prep merge`"),
        click.option("--workers", type=StrictInt(min=0), default=None, show_default="all cores",
                     help="worker processes; 0 or 1 runs in this process"),
        click.option("--strict", is_flag=True, help="exit 1 if any scan failed"),
        click.option("--overwrite", is_flag=True, help="replace an existing SHARD (or SHARD.tmp) "
                                                       "instead of resuming it"),
        click.option("--quiet", is_flag=True, help="no progress bar; only the summary line"),
    ]):
        command = option(command)
    fer3d_prep.command(dataset, help=(
        f"Preprocess the raw {title} tree RAW into the HDF5 shard SHARD.\n\n"
        "Every selected scan is cleaned, cropped, posed, gridfitted, textured, landmarked and "
        "masked (docs/preprocessing.md) in worker processes; a scan that fails becomes an /errors "
        "row and the run goes on. SHARD.tmp is renamed to SHARD when complete: rerunning the "
        "same command after Ctrl-C or a crash resumes where it stopped."))(command)


_prep_command("bu3dfe")
_prep_command("bosphorus")


def _check_output(out: Path) -> None:
    """An output file path whose folder exists and is writable, before any work."""
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise Fer3dDataError(f"{parent}: is a file, not a folder; check the output path {out}")
    if not parent.is_dir():
        raise Fer3dDataError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Fer3dDataError(f"output directory {parent} is not writable")


def _select_records(dataset: str, raw: Path, selection: dict, part):
    from .datasets import select, walkers

    try:
        records = walkers[dataset](raw)
    except Fer3dDataError as e:
        raise Fer3dDataError(f"{e} ({_DATASET_HINTS[dataset]})") from None
    chosen = select(records, **selection)
    if not chosen:
        given = ", ".join(f"{k}={v}" for k, v in selection.items() if v is not None) or "none"
        raise Fer3dDataError(f"no scan of the {len(records)} under {raw} matches the selection "
                             f"({given})")
    if part is not None:
        chosen = sorted(chosen, key=lambda r: r.scan_id)[part[0]::part[1]]
    return records, chosen


def _run_prep(cfg: PrepConfig, raw: Path, out: Path, selection: dict, *, part, workers, strict,
              overwrite, quiet) -> int:
    from . import shards
    from .prep.runner import default_workers, run_prep

    _check_output(out)
    shards.preflight(out, config=cfg, landmark_scheme=cfg.landmark_scheme()[0], overwrite=overwrite)
    records, chosen = _select_records(cfg.dataset, raw, selection, part)
    workers = default_workers() if workers is None else workers
    if not quiet:
        click.echo(f"{PROG} {cfg.dataset}: {len(chosen)} of {len(records)} scans selected, "
                   f"{workers} workers, S={cfg.image_size} -> {out}", err=True)
    try:
        summary = run_prep(chosen, out, cfg, workers=workers, strict=strict, overwrite=overwrite,
                           progress=not quiet, raw_root=raw)
    except KeyboardInterrupt:
        click.echo(f"{PROG}: interrupted; {shards.tmp_path(out)} kept: rerun the same command "
                   "to resume", err=True)
        return 130
    click.echo(summary.line())
    if summary.n_samples == 0:
        click.echo(f"{PROG}: error: no scan could be written; see `{PROG} inspect {out} --errors`",
                   err=True)
    return summary.exit_code


_SHARD = click.argument("shard", metavar="SHARD", type=click.Path(dir_okay=False, path_type=Path))


@fer3d_prep.command("inspect")
@_SHARD
@click.option("--json", "as_json", is_flag=True, help="print the full report as JSON")
@click.option("--errors", is_flag=True, help="also list every failed scan")
def inspect_command(shard, as_json, errors):
    """Print what SHARD holds: samples per expression, intensity and subject, failed scans
    per step, and the preprocessing config it was written with."""
    from .shards import inspect, open_shard

    info = inspect(shard)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{info['path']}: {info['dataset']} shard v{info['format_version']}, "
               f"{info['n_samples']} samples of {info['n_subjects']} subjects, "
               f"S={info['image_size']}, landmarks {info['landmark_scheme']}"
               + ("" if info["complete"] else " (incomplete .tmp)"))
    steps = ", ".join(f"{k} {v}" for k, v in info["errors_by_step"].items())
    rows = [
        ("expression", ", ".join(f"{k} {v}" for k, v in info["by_expression"].items())),
        ("intensity", ", ".join(f"{k} {v}" for k, v in info["by_intensity"].items())),
        ("masks from", ", ".join(f"{k} {v}" for k, v in info["by_mask_source"].items())),
        ("subjects", ", ".join(f"{k} {v}" for k, v in info["by_subject"].items())),
        ("errors", f"{info['n_errors']}" + (f" ({steps})" if steps else "")),
        ("parts", ", ".join(info["parts"])),
        ("config", ", ".join(f"{k}={v}" for k, v in sorted(info["config"].items()))),
    ]
    for label, text in rows:
        if text:
            click.echo(textwrap.fill(text, width=100, initial_indent=f"  {label + ':':12s}",
                                     subsequent_indent=" " * 14))
    if errors:
        with open_shard(shard) as s:
            for e in s.errors():
                click.echo(f"  [{e['step']}] {e['source']}: {e['message']}")


@fer3d_prep.command("verify")
@_SHARD
@click.pass_context
def verify_command(ctx, shard):
    """Check SHARD against docs/shards.md: datasets, shapes, dtypes, value ranges (masks in
    [0, 1], finite depth, mask28 = area-resize of mask56), and read every chunk so checksum
    errors surface. Prints each problem; exit 1 if there is any."""
    from .shards import verify

    problems = verify(shard)
    for p in problems:
        click.echo(p)
    if problems:
        click.echo(f"{shard}: {len(problems)} problem(s)", err=True)
        ctx.exit(1)
    click.echo(f"{shard}: OK")


@fer3d_prep.command("preview")
@_SHARD
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              show_default="SHARD_preview.png", help="PNG to write")
@click.option("-n", type=StrictInt(min=1), default=8, help="samples, evenly spread over the shard")
def preview_command(shard, output, n):
    """Write a PNG with one row per sample of SHARD: texture, depth (colour over scanned
    cells), mask over texture, landmarks."""
    from .preview import preview

    out = output or shard.with_name(shard.stem + "_preview.png")
    preview(shard, out, n=n)
    click.echo(out)


@fer3d_prep.command("merge")
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("parts", metavar="PART...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--virtual", is_flag=True,
              help="write a virtual-dataset file that references the parts instead of copying "
                   "them: instant and small, but the parts must stay beside OUT")
@click.option("--overwrite", is_flag=True, help="replace an existing OUT")
def merge_command(out, parts, virtual, overwrite):
    """Join shards of one config into OUT, one self-contained shard.

    The parts are typically the SHARDs of `bu3dfe`/`bosphorus` runs with --shard I/N; their
    samples and /errors rows are copied (without --virtual)."""
    from .shards import inspect, merge

    _check_output(out)
    merge(out, parts, overwrite=overwrite, virtual=virtual)
    info = inspect(out)
    click.echo(f"{out}: {info['n_samples']} samples from {len(parts)} parts, "
               f"{info['n_errors']} error rows" + (" (virtual)" if virtual else ""))


@fer3d_prep.command("export")
# a shard's /config is a valid --config here too: the parameters of later steps are ignored
@config_option(ignore=tuple(f.name for f in dataclasses.fields(PrepConfig)
                            if f.name not in _SURFACE_PARAMS))
@click.argument("source", metavar="RAW_OR_SHARD", type=click.Path(exists=True, path_type=Path))
@click.argument("scan_id", metavar="ID")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="face.ply or face.obj; the texture goes to face.png beside it")
@_prep_options(_SURFACE_PARAMS)
def export_command(source, scan_id, output, **params):
    """Write scan ID's cleaned, cropped, frontal surface with its texture, for MeshLab.

    RAW_OR_SHARD is a raw BU-3DFE/Bosphorus tree (the scan is read and cleaned, cropped and
    posed with the options below) or a shard (its depth grid is triangulated over covered
    cells and textured with its aligned texture; the options do not apply)."""
    from .export import export_face

    _check_output(output)
    for path in export_face(source, scan_id, output, PrepConfig(**params)):
        click.echo(path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-prep``; returns the exit code (Python callers get it too)."""
    try:
        return int(fer3d_prep.main(args=argv, prog_name=PROG, standalone_mode=False) or 0)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
