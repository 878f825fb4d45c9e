"""The README's demo: the whole fer3d job on a built-in synthetic dataset, on the CPU.

Stage: user -> every stage, as the README's ``bin/demo`` runs it:

synthetic raw BU-3DFE tree (fer3d_data.synth) -> fer3d-prep -> inspect + preview ->
fer3d-train (small images, 2 folds, a few epochs) -> accuracy and confusion matrix ->
fer3d-report (tables beside the paper's number, figures).

    python -m fer3d.cli.demo [--out demo_out] [--subjects 8] [--epochs 20] [--image-size 64]

Each stage is the same command a user runs on real data; the demo only picks small sizes.
Stages whose output exists are reused, so a second run goes straight to training.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import click

from fer3d_data.clibase import Command, StrictInt


def _stage(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.perf_counter()


def main(args) -> int:
    from fer3d.cli import train as train_cli
    from fer3d.cli.report import main as report_main
    from fer3d_data import cli as prep_cli

    out: Path = args.out
    raw, shard = out / "raw_bu3dfe", out / "synth.h5"
    start = time.perf_counter()

    t = _stage(f"1/5 synthetic raw BU-3DFE tree: {args.subjects} subjects x 25 scans -> {raw}")
    if not raw.is_dir():
        # Smaller meshes and textures than the default BU-3DFE size keep the demo quick.
        code = prep_cli.main(["synth", "bu3dfe", str(raw), "--subjects", str(args.subjects),
                              "--seed", str(args.seed), "--vertices", "4000",
                              "--texture-size", "256", "--f2d-size", "128"])
        if code:
            return code
    else:
        print(f"reusing {raw}")
    print(f"({time.perf_counter() - t:.0f} s)")

    t = _stage(f"2/5 fer3d-prep bu3dfe {raw} {shard}")
    code = prep_cli.main(["bu3dfe", str(raw), str(shard), "--size", str(2 * args.image_size)])
    if code:
        return code
    print(f"({time.perf_counter() - t:.0f} s)")

    _stage("3/5 fer3d-prep inspect / preview")
    prep_cli.main(["inspect", str(shard)])
    prep_cli.main(["preview", str(shard), "-o", str(out / "preview.png")])

    t = _stage(f"4/5 fer3d-train: AFNet-M, {args.image_size} px, 2 folds, {args.epochs} "
               "epochs, CPU")
    code = train_cli.main([str(shard), "--out", str(out / "run"), "--folds", "2",
                                 "--epochs", str(args.epochs), "--image-size", str(args.image_size),
                                 "--batch-size", "16", "--seed", str(args.seed)])
    print(f"({time.perf_counter() - t:.0f} s)")
    if code:
        return code

    _stage(f"5/5 fer3d-report {out / 'run'} -o {out / 'report'}")
    report_main([str(out / "run"), "-o", str(out / "report")])
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; outputs in {out}/ "
          f"(preview.png, run/summary.json, run/confusion.png, report/report.md)")
    return 0


@click.command("fer3d-demo", cls=Command)
@click.option("--out", type=click.Path(file_okay=False), default="demo_out",
              envvar="FER3D_DEMO_OUT", help="output folder ($FER3D_DEMO_OUT)")
@click.option("--subjects", type=StrictInt(min=4), default=8, help="synthetic subjects")
@click.option("--epochs", type=StrictInt(min=1), default=20, help="training epochs per fold")
@click.option("--image-size", type=StrictInt(min=32, max=224), default=64,
              help="training input size; shards are prepared at 2x this")
@click.option("--seed", type=StrictInt(min=0), default=0)
def demo_command(out, **kw):
    """The whole fer3d job on a built-in synthetic dataset, on the CPU."""
    raise SystemExit(main(SimpleNamespace(out=Path(out), **kw)))


if __name__ == "__main__":
    demo_command(prog_name="fer3d-demo")
