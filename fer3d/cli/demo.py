"""The README's demo: the whole fer3d job on a built-in synthetic dataset, on the CPU.

Stage: user -> every stage, as the README's ``bin/demo`` runs it:

synthetic raw BU-3DFE tree (fer3d_data.synth) -> fer3d-prep -> inspect + preview ->
fer3d-train (small images, 2 folds, a few epochs) -> accuracy and confusion matrix ->
fer3d-report (tables beside the paper's number, figures) -> fer3d-predict on the raw scans
of two more synthetic subjects the model never saw (one scan without its landmark file,
one broken): the prediction table and its accuracy.

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

    t = _stage(f"1/6 synthetic raw BU-3DFE tree: {args.subjects} subjects x 25 scans -> {raw}")
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

    t = _stage(f"2/6 fer3d-prep bu3dfe {raw} {shard}")
    code = prep_cli.main(["bu3dfe", str(raw), str(shard), "--size", str(2 * args.image_size)])
    if code:
        return code
    print(f"({time.perf_counter() - t:.0f} s)")

    _stage("3/6 fer3d-prep inspect / preview")
    prep_cli.main(["inspect", str(shard)])
    prep_cli.main(["preview", str(shard), "-o", str(out / "preview.png")])

    t = _stage(f"4/6 fer3d-train: AFNet-M, {args.image_size} px, 2 folds, {args.epochs} "
               "epochs, CPU")
    code = train_cli.main([str(shard), "--out", str(out / "run"), "--folds", "2",
                                 "--epochs", str(args.epochs), "--image-size", str(args.image_size),
                                 "--batch-size", "16", "--seed", str(args.seed)])
    print(f"({time.perf_counter() - t:.0f} s)")
    if code:
        return code

    _stage(f"5/6 fer3d-report {out / 'run'} -o {out / 'report'}")
    report_main([str(out / "run"), "-o", str(out / "report")])

    t = _stage("6/6 fer3d-predict: raw scans of two subjects the model never saw")
    code = predict_unseen(out / "run", out, args.subjects, args.seed)
    print(f"({time.perf_counter() - t:.0f} s)")
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; outputs in {out}/ "
          f"(preview.png, run/summary.json, run/confusion.png, report/report.md, "
          f"predictions.csv)")
    return code


def unseen_scans(folder: Path, trained: int, seed: int) -> list[Path]:
    """The six expressions at intensities 3 and 4 of the two synthetic subjects after the
    first ``trained``, as raw BU-3DFE files; the first scan without its .bnd, the last one
    truncated (a broken file). Returns the meshes."""
    from fer3d_data.schema import EXPRESSIONS
    from fer3d_data.synth import bu3dfe_subjects, build_bu3dfe_scan, write_bu3dfe_scan

    meshes = []
    for subject in bu3dfe_subjects(trained + 2)[trained:]:
        for expression in EXPRESSIONS:
            for intensity in (3, 4):
                scan = build_bu3dfe_scan(subject, expression, intensity, seed=seed,
                                         vertices=4000, texture_size=256, f2d_size=128)
                skip = ("bnd", "f2d") if not meshes else ("f2d",)
                meshes += [p for p in write_bu3dfe_scan(scan, folder, skip=skip)
                           if p.suffix == ".wrl"]
    text = meshes[-1].read_text()
    meshes[-1].write_text(text[: len(text) // 3])
    return meshes


def predict_unseen(run: Path, out: Path, trained: int, seed: int) -> int:
    """The demo's last stage: fer3d-predict with ``run`` on the raw scans of
    :func:`unseen_scans` (written once to ``out/unseen_bu3dfe``) into ``out/predictions.csv``,
    then the table and its accuracy on standard output."""
    import csv

    from fer3d.cli.predict import main as predict_main

    folder, table = out / "unseen_bu3dfe", out / "predictions.csv"
    if not folder.is_dir():
        unseen_scans(folder, trained, seed)
    code = predict_main([str(run), str(folder), "-o", str(table), "--no-progress"])
    if code:
        return code
    with open(table, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    print(f"{'sample':14} {'true':10} {'predicted':10} {'p':>5}  landmarks  note")
    for r in rows:
        p = f"{float(r['p_' + r['predicted']]):.2f}" if r["predicted"] else ""
        # the sample column names the scan: its file name is enough in the note
        note = (r["error"] or r["warning"]).replace(r["input"], Path(r["input"]).name)
        print(f"{r['sample_id']:14} {r['label']:10} {r['predicted'] or '-':10} {p:>5}  "
              f"{r['landmarks'] or '-':9}  {note[:70]}")
    scored = [r for r in rows if r["predicted"]]
    right = sum(r["label"] == r["predicted"] for r in scored)
    print(f"accuracy on the unseen subjects: {right}/{len(scored)} predicted scans "
          f"({100 * right / max(len(scored), 1):.0f} %; chance 17 %), "
          f"{len(rows) - len(scored)} error row(s); table: {table}")
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
