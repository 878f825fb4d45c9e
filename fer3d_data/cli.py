"""``fer3d-prep``: raw scan trees -> HDF5 shards, and tools for shards.

Stage: the command line of fer3d_data (click, through :mod:`fer3d_data.clibase`). Each
command parses its options and calls one library function, so every command is callable
from Python and tests. Input problems are reported before any work starts, as one line
with exit status 2; a run prints one summary line at the end.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from pathlib import Path

import click

from .clibase import Group, StrictInt, config_option
from .datasets import ADAPTERS
from .prep.command import PROG, check_output, prep_command, prep_options
from .prep.config import PrepConfig
from .synth.command import synth_group


@click.group(cls=Group, name=PROG)
def fer3d_prep():
    """Turn raw 3D face scans (BU-3DFE, Bosphorus, or any labelled folder of meshes) into
    documented HDF5 shards (docs/shards.md), and inspect, verify, preview, merge or export
    them."""


fer3d_prep.add_command(synth_group)
for _adapter in ADAPTERS.values():  # one command per registered dataset (docs/datasets.md)
    fer3d_prep.add_command(prep_command(_adapter))

# The parameters of the steps up to the frontal surface: what `export` of a raw scan uses.
_SURFACE_PARAMS = ("crop_radius", "pose", "outlier_nb_neighbors", "outlier_std_ratio",
                   "spike_radius", "spike_max_dev", "min_points", "allow_outside_textures",
                   "max_image_pixels")


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
        ("labels", ", ".join(f"{k} {v}" for k, v in info["by_label"].items())),
        ("sequences", str(info["n_sequences"]) if info["n_sequences"] else ""),
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

    check_output(out)
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
@prep_options(_SURFACE_PARAMS)
def export_command(source, scan_id, output, **params):
    """Write scan ID's cleaned, cropped, frontal surface with its texture, for MeshLab.

    RAW_OR_SHARD is a raw BU-3DFE/Bosphorus tree (the scan is read and cleaned, cropped and
    posed with the options below) or a shard (its depth grid is triangulated over covered
    cells and textured with its aligned texture; the options do not apply)."""
    from .export import export_face

    check_output(output)
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
