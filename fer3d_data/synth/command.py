"""``fer3d-prep synth bu3dfe|bosphorus|folder OUT``: write a synthetic raw tree from the
command line.

Stage: test fixtures, the demo and users' dry runs. Each dataset is its own subcommand with
only the options that apply to it; defaults are those of :func:`make_bu3dfe`,
:func:`make_bosphorus` and :func:`make_folder` (read from their signatures, so they are
stated once).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import click

from ..clibase import Group, StrictFloat, StrictInt
from .bosphorus import BNT_VARIANTS, LM_VARIANTS, make_bosphorus
from .bu3dfe import WRL_VARIANTS, make_bu3dfe
from .folder import BROKEN, FOLDER_CLASSES, make_folder


def _default(fn, name: str):
    return inspect.signature(fn).parameters[name].default


def _common(fn):
    """Options both datasets share, with ``fn``'s defaults."""
    options = [
        click.argument("out", metavar="RAW", type=click.Path(file_okay=False, path_type=Path)),
        click.option("--subjects", type=StrictInt(min=1), default=_default(fn, "subjects"),
                     help="number of subjects"),
        click.option("--seed", type=StrictInt(), default=_default(fn, "seed"),
                     help="same seed and options -> same bytes"),
        click.option("--noise", type=StrictFloat(min=0), default=_default(fn, "noise"),
                     metavar="MM",
                     help="gaussian z noise sigma"),
        click.option("--holes", type=StrictInt(min=0), default=_default(fn, "holes"),
                     help="holes cut per scan"),
        click.option("--spikes", type=StrictFloat(min=0, max=1), default=_default(fn, "spikes"),
                     help="fraction of points moved 5-20 mm"),
        click.option("--outliers", type=StrictFloat(min=0, max=1), default=_default(fn, "outliers"),
                     help="outlier points 30-80 mm off the surface, as a fraction"),
        click.option("--missing", type=StrictFloat(min=0, max=1), default=_default(fn, "missing"),
                     help="probability that each companion file is not written"),
        click.option("--markers", is_flag=True,
                     help="coloured dots at chosen landmarks in the textures"),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


@click.group(cls=Group, name="synth")
def synth_group():
    """Write a synthetic raw tree in the exact BU-3DFE or Bosphorus file formats.

    For tests, demos and dry runs without the licensed data: seeded identities, six
    expressions plus neutral, optional noise, holes, spikes, outliers, missing files and
    file-spelling variants.
    """


@synth_group.command("bu3dfe")
@_common(make_bu3dfe)
@click.option("--vertices", type=StrictInt(min=50), default=_default(make_bu3dfe, "vertices"),
              help="mesh vertices per scan")
@click.option("--texture-size", type=StrictInt(min=8), default=_default(make_bu3dfe,
                                                                        "texture_size"),
              metavar="PX", help="side of the _F3D.bmp texture")
@click.option("--f2d-size", type=StrictInt(min=8), default=_default(make_bu3dfe, "f2d_size"),
              metavar="PX", help="side of the _F2D.bmp photograph")
@click.option("--variant", type=click.Choice(WRL_VARIANTS), multiple=True,
              help="wrl spelling variant (repeatable)")
def synth_bu3dfe(out, variant, **kw):
    """Write a BU-3DFE tree to RAW: per subject NE00 and six expressions x intensities 01-04."""
    paths = make_bu3dfe(out, wrl_variants=variant, **kw)
    click.echo(f"wrote {len(paths)} files for {kw['subjects']} bu3dfe subject(s) to {out}")


@synth_group.command("bosphorus")
@_common(make_bosphorus)
@click.option("--grid", type=(StrictInt(min=16), StrictInt(min=16)),
              default=_default(make_bosphorus, "grid"),
              metavar="ROWS COLS", help="range grid size")
@click.option("--texture-scale", type=StrictFloat(min=0, min_open=True),
              default=_default(make_bosphorus,
                               "texture_scale"), help="texture pixels per grid cell")
@click.option("--drop-landmarks", type=StrictFloat(min=0, max=1),
              default=_default(make_bosphorus, "drop_landmarks"),
              help="probability that a scan lacks 1-2 landmarks")
@click.option("--variant", type=click.Choice(LM_VARIANTS + BNT_VARIANTS), multiple=True,
              help="lm/bnt spelling variant (repeatable)")
def synth_bosphorus(out, variant, grid, **kw):
    """Write a Bosphorus tree to RAW: per subject N_N_0 and the six E_*_0 emotions."""
    paths = make_bosphorus(out, grid=tuple(grid),
                           lm_variants=[v for v in variant if v in LM_VARIANTS],
                           bnt_variants=[v for v in variant if v in BNT_VARIANTS], **kw)
    click.echo(f"wrote {len(paths)} files for {kw['subjects']} bosphorus subject(s) to {out}")


@synth_group.command("folder")
@click.argument("out", metavar="RAW", type=click.Path(file_okay=False, path_type=Path))
@click.option("--subjects", type=StrictInt(min=1), default=_default(make_folder, "subjects"),
              help="number of subjects")
@click.option("--seed", type=StrictInt(), default=_default(make_folder, "seed"),
              help="same seed and options -> same bytes")
@click.option("--frames", type=StrictInt(min=1), default=_default(make_folder, "frames"),
              help="frames of each subject's capture sequence")
@click.option("--vertices", type=StrictInt(min=200), default=_default(make_folder, "vertices"),
              help="mesh vertices per scan")
@click.option("--texture-size", type=StrictInt(min=16),
              default=_default(make_folder, "texture_size"), metavar="PX",
              help="side of each texture image")
def synth_folder(out, **kw):
    """Write a labelled folder to RAW for `fer3d-prep folder`: OBJ/PLY faces of the classes
    brow_raise, frown, jaw_drop and smile, labels.csv, scheme.yaml, sequences and a few
    broken rows."""
    labels = make_folder(out, **kw)
    click.echo(f"wrote {kw['subjects']} subject(s) x {len(FOLDER_CLASSES)} classes, "
               f"{kw['subjects']} sequence(s) and {BROKEN} broken rows to {out}; run:\n"
               f"  fer3d-prep folder {out} OUT.h5 --labels {labels} "
               f"--landmark-scheme {Path(out) / 'scheme.yaml'}")
