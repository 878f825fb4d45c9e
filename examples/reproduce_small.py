"""One end-to-end reproduction of the AFNet-M paper at small settings: every campaign of
Tables 1-3 and Figs. 4-6 on your shard(s), then every table and figure beside the published
numbers, through the same command as the full reproduction (fer3d-reproduce).

Usage: python examples/reproduce_small.py SHARD.h5 [SHARD.h5 ...] [--out DIR] [--target T]

Small means 1 repeat, 2 folds, 1 epoch, 64 px inputs (--image-size), branches from scratch, no
loader workers: minutes on a CPU, numbers that say nothing about the method. It is a dry run of
the pipeline on your data (or on the demo's synthetic shard, demo_out/synth.h5 after
`python -m fer3d.cli.demo`). The paper's setup: `fer3d-reproduce all SHARDS --out DIR` with
ImageNet weights in the torch hub cache (docs/reproduce.md: commands, GPU cost, choices).
"""

import argparse
from pathlib import Path

from fer3d.cli.reproduce import reproduce_command

SMALL = ["--repeats", "1", "--folds", "2", "--epochs", "1", "--pretrained", "none",
         "--workers", "0", "--no-progress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards", nargs="+", metavar="SHARD.h5")
    parser.add_argument("--out", type=Path, default=Path("reproduce_small"))
    parser.add_argument("--target", default="all", help="table1..table4, fig4..fig6 or all")
    parser.add_argument("--image-size", type=int, default=64,
                        help="input side; Grad-CAM needs >= 64 for maps finer than one cell")
    args = parser.parse_args()
    reproduce_command.main([args.target, *args.shards, "--out", str(args.out),
                            "--image-size", str(args.image_size), *SMALL],
                           standalone_mode=False)
    for table in ("table1", "table2", "table3", "table4"):
        path = args.out / table / f"{table}.md"
        if path.is_file():
            print(path.read_text(encoding="utf-8"))
    print(f"everything is under {args.out}; the full report: {args.out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
