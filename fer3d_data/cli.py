"""``fer3d-prep``: raw BU-3DFE / Bosphorus trees -> HDF5 shards, and tools for shards.

Stage: the command line of fer3d_data. Parsing is apart from work (:func:`build_parser`,
:func:`main`), so every command is callable from Python and tests. Input problems are
reported before any work starts; a run prints one summary line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import Fer3dDataError
from .schema import CLASS_NAMES

PROG = "fer3d-prep"
# Options that override a --config file's value (dest -> PrepConfig field).
_OVERRIDES = {"size": "image_size", "crop_radius": "crop_radius", "smoothness": "smoothness",
              "landmarks": "landmarks"}
# Two-letter BU-3DFE expression codes accepted by --expressions besides the class names.
_EXPRESSION_CODES = {"AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness",
                     "SA": "sadness", "SU": "surprise", "NE": "neutral"}
_DATASET_HINTS = {
    "bu3dfe": "expected BU-3DFE files such as F0001/F0001_AN01WH_F3D.wrl (+ .bnd, .bmp)",
    "bosphorus": "expected Bosphorus files such as bs000/bs000_E_ANGER_0.bnt (+ .lm3, .png)",
}


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _add_prep_parser(sub, dataset: str, title: str) -> None:
    from .prep import PrepConfig

    d = PrepConfig()
    p = sub.add_parser(
        dataset, help=f"preprocess a raw {title} tree into one HDF5 shard",
        description=(
            f"Preprocess every selected {title} scan (clean, crop, pose, gridfit, texture, "
            "landmarks, masks) into one HDF5 shard (schema: docs/shards.md). Scans run in "
            "worker processes; a scan that fails becomes an /errors row and the run goes on. "
            "The shard is written to OUT.tmp and renamed when complete: rerunning the same "
            "command after Ctrl-C or a crash resumes where it stopped."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("raw", metavar="RAW", type=Path, help=f"root of the raw {title} tree")
    p.add_argument("out", metavar="OUT.h5", type=Path, help="shard to write")
    g = p.add_argument_group("preprocessing (stored in the shard's /config)")
    g.add_argument("--size", type=int, default=d.image_size, help="depth/texture grid side S in pixels")
    g.add_argument("--crop-radius", type=float, default=d.crop_radius, metavar="MM",
                   help="crop sphere radius around the nose tip; the grid spans ±MM")
    g.add_argument("--smoothness", type=float, default=d.smoothness, help="gridfit smoothness")
    g.add_argument("--no-pose", action="store_true", help="skip the rotation to frontal pose")
    g.add_argument("--landmarks", choices=("auto", "native", "dlib"), default=d.landmarks,
                   help="landmarks for the masks: the scan's own, dlib's 68 points on the aligned "
                        "texture, or auto (native where present, else dlib)")
    g.add_argument("--config", type=Path, metavar="JSON",
                   help="JSON file of PrepConfig parameters (every one; see docs/preprocessing.md); "
                        "the options above override it when given explicitly")
    s = p.add_argument_group("selection (default: every expression scan and neutral)")
    s.add_argument("--subjects", metavar="LIST", help="comma-separated subject ids (F0001,M0044 / bs000)")
    s.add_argument("--expressions", metavar="LIST",
                   help=f"comma-separated names ({','.join(CLASS_NAMES)}) or BU-3DFE codes (AN,...,NE)")
    s.add_argument("--intensities", metavar="LIST", help="comma-separated BU-3DFE intensities 0-4 (e.g. 3,4)")
    s.add_argument("--shard", metavar="I/N",
                   help="process only part I of N (0 <= I < N) of the selection, for cluster array "
                        "jobs; join the parts with `fer3d-prep merge`")
    r = p.add_argument_group("run")
    r.add_argument("--workers", type=int, default=_default_workers(),
                   help="worker processes (default: all cores of this machine); 0 or 1 runs in this process")
    r.add_argument("--strict", action="store_true", help="exit 1 if any scan failed")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT (or OUT.tmp) instead of resuming it")
    r.add_argument("--quiet", action="store_true", help="no progress bar; only the summary line")
    p.set_defaults(func=_cmd_prep, dataset=dataset)


_SYNTH_HELP = ("write a synthetic raw tree in the exact BU-3DFE/Bosphorus file formats "
               "(tests, demos, dry runs); `synth --help` lists its options")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=("Turn raw BU-3DFE / Bosphorus scans into documented HDF5 shards "
                     "(docs/shards.md) and inspect, verify, preview or merge shards."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_prep_parser(sub, "bu3dfe", "BU-3DFE")
    _add_prep_parser(sub, "bosphorus", "Bosphorus")

    # synth is imported only when run: the other commands work without it.
    p = sub.add_parser("synth", add_help=False, help=_SYNTH_HELP, description=_SYNTH_HELP)
    p.add_argument("synth_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("inspect", help="count samples per subject/expression/intensity and errors",
                       description="Print what a shard holds: counts per expression, intensity "
                                   "and subject, failed scans per step, and the config.")
    p.add_argument("shard", metavar="OUT.h5", type=Path)
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--errors", action="store_true", help="also list every failed scan")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("verify", help="check schema, values and checksums (exit 1 on problems)",
                       description="Check a shard against docs/shards.md: datasets, shapes, dtypes, "
                                   "value ranges (masks in [0,1], finite depth, mask28 = area-resize "
                                   "of mask56), and read every chunk so Fletcher-32 checksum errors "
                                   "surface. Prints each problem; exit 1 if there is any.")
    p.add_argument("shard", metavar="OUT.h5", type=Path)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("preview", help="montage PNG of a few samples to check alignment by eye",
                       description="Write a PNG with one row per sample: texture, depth (colour "
                                   "over scanned cells), mask over texture, landmarks.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("shard", metavar="OUT.h5", type=Path)
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default: OUT_preview.png)")
    p.add_argument("-n", type=int, default=8, help="number of samples, evenly spread over the shard")
    p.set_defaults(func=_cmd_preview)

    p = sub.add_parser("merge", help="join shards of one config into one virtual shard",
                       description="Write OUT.h5 as an HDF5 virtual-dataset file over PART files "
                                   "(same config, e.g. --shard i/n runs); it reads as one shard. "
                                   "The parts stay where they are: keep them next to OUT.h5.")
    p.add_argument("out", metavar="OUT.h5", type=Path)
    p.add_argument("parts", metavar="PART", type=Path, nargs="+")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.h5")
    p.set_defaults(func=_cmd_merge)
    return parser


def _cmd_synth(args) -> int:
    try:
        from . import synth
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.synth":
            raise
        raise Fer3dDataError("fer3d_data.synth is not available in this installation") from None
    parser = argparse.ArgumentParser(prog=f"{PROG} synth", description=_SYNTH_HELP,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    synth.add_arguments(parser)
    rest = args.synth_args[1:] if args.synth_args[:1] == ["--"] else args.synth_args
    return synth.run(parser.parse_args(rest))


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    if value.startswith("@"):  # @file: one item per line
        items = Path(value[1:]).read_text().split()
    else:
        items = value.split(",")
    return [v.strip() for v in items if v.strip()]


def _expressions(value: str | None) -> list[str]:
    items = _split(value)
    if items is None:
        return list(CLASS_NAMES)
    out = []
    for item in items:
        name = _EXPRESSION_CODES.get(item.upper(), item.lower())
        if name not in CLASS_NAMES:
            raise Fer3dDataError(f"--expressions: unknown {item!r}; use {', '.join(CLASS_NAMES)} "
                                 f"or {','.join(_EXPRESSION_CODES)}")
        out.append(name)
    return out


def _intensities(value: str | None) -> list[int] | None:
    items = _split(value)
    if items is None:
        return None
    try:
        out = [int(v) for v in items]
    except ValueError:
        raise Fer3dDataError(f"--intensities: expected integers 0-4, got {value!r}") from None
    if any(not 0 <= v <= 4 for v in out):
        raise Fer3dDataError(f"--intensities: values must be in 0-4, got {value!r}")
    return out


def _shard_part(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise Fer3dDataError(f"--shard: expected I/N such as 0/4, got {value!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise Fer3dDataError(f"--shard: need 0 <= I < N, got {value!r}")
    return i, n


def _prep_config(args):
    from .prep import PrepConfig

    base = PrepConfig(dataset=args.dataset).to_dict()
    if args.config is not None:
        try:
            base.update(json.loads(args.config.read_text()))
        except (OSError, ValueError) as e:
            raise Fer3dDataError(f"--config {args.config}: cannot read JSON ({e})") from None
        base["dataset"] = args.dataset
    defaults = PrepConfig().to_dict()
    for dest, key in _OVERRIDES.items():
        value = getattr(args, dest)
        # An option equal to its default does not override a --config value.
        if args.config is None or value != defaults[key]:
            base[key] = value
    if args.no_pose:
        base["pose"] = False
    return PrepConfig.from_dict(base)


def _check_paths(raw: Path, out: Path) -> None:
    if not raw.exists():
        raise Fer3dDataError(f"raw directory {raw} does not exist")
    if not raw.is_dir():
        raise Fer3dDataError(f"raw directory {raw} is not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise Fer3dDataError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Fer3dDataError(f"output directory {parent} is not writable")
    if out.is_dir():
        raise Fer3dDataError(f"output {out} is a directory; give a file name such as {out / 'shard.h5'}")


def _select_records(args, cfg):
    from .datasets import select, walkers

    try:
        records = walkers[args.dataset](args.raw)
    except Fer3dDataError as e:
        raise Fer3dDataError(f"{e} ({_DATASET_HINTS[args.dataset]})") from None
    subjects = _split(args.subjects)
    chosen = select(records, subjects=subjects, expressions=_expressions(args.expressions),
                    intensities=_intensities(args.intensities))
    if not chosen:
        raise Fer3dDataError(f"no scan of the {len(records)} under {args.raw} matches the selection "
                             f"(subjects={args.subjects}, expressions={args.expressions}, "
                             f"intensities={args.intensities})")
    part = _shard_part(args.shard)
    if part is not None:
        chosen = sorted(chosen, key=lambda r: r.scan_id)[part[0]::part[1]]
    return records, chosen


def _cmd_prep(args) -> int:
    from . import shards
    from .prep import run_prep

    cfg = _prep_config(args)
    _shard_part(args.shard)  # a malformed --shard is reported before the walk
    _check_paths(args.raw, args.out)
    shards.preflight(args.out, config=cfg, landmark_scheme=cfg.landmark_scheme()[0], overwrite=args.overwrite)
    records, chosen = _select_records(args, cfg)
    if not args.quiet:
        print(f"{PROG} {args.dataset}: {len(chosen)} of {len(records)} scans selected, "
              f"{args.workers} workers, S={cfg.image_size} -> {args.out}", file=sys.stderr)
    try:
        summary = run_prep(chosen, args.out, cfg, workers=args.workers, strict=args.strict,
                           overwrite=args.overwrite, progress=not args.quiet, raw_root=args.raw)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; {shards.tmp_path(args.out)} kept: rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    print(summary.line())
    if summary.n_samples == 0:
        print(f"{PROG}: error: no scan could be written; see `{PROG} inspect {args.out} --errors`",
              file=sys.stderr)
    return summary.exit_code


def _cmd_inspect(args) -> int:
    from .shards import inspect, open_shard

    info = inspect(args.shard)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['path']}: {info['dataset']} shard v{info['format_version']}, "
          f"{info['n_samples']} samples of {info['n_subjects']} subjects, S={info['image_size']}, "
          f"landmarks {info['landmark_scheme']}" + ("" if info["complete"] else " (incomplete .tmp)"))
    print("  expression: " + ", ".join(f"{k} {v}" for k, v in info["by_expression"].items()))
    print("  intensity:  " + ", ".join(f"{k} {v}" for k, v in info["by_intensity"].items()))
    print("  masks from: " + ", ".join(f"{k} {v}" for k, v in info["by_mask_source"].items()))
    steps = ", ".join(f"{k} {v}" for k, v in info["errors_by_step"].items())
    print(f"  errors:     {info['n_errors']}" + (f" ({steps})" if steps else ""))
    if info["parts"]:
        print(f"  parts:      {', '.join(info['parts'])}")
    if args.errors:
        with open_shard(args.shard) as shard:
            for e in shard.errors():
                print(f"  [{e['step']}] {e['source']}: {e['message']}")
    return 0


def _cmd_verify(args) -> int:
    from .shards import verify

    problems = verify(args.shard)
    for p in problems:
        print(p)
    if problems:
        print(f"{args.shard}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.shard}: OK")
    return 0


def _cmd_preview(args) -> int:
    from .preview import preview

    out = args.output or args.shard.with_name(args.shard.stem + "_preview.png")
    preview(args.shard, out, n=args.n)
    print(out)
    return 0


def _cmd_merge(args) -> int:
    from .shards import inspect, merge

    out = merge(args.out, args.parts, overwrite=args.overwrite)
    info = inspect(out)
    print(f"{out}: {info['n_samples']} samples from {len(args.parts)} parts, {info['n_errors']} error rows")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-prep``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["synth"]:  # its options belong to fer3d_data.synth's own parser
        argv = ["synth", "--", *argv[1:]]
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Fer3dDataError as e:
        return _fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
