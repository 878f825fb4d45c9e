"""fer3d-train and fer3d-eval: command lines over fer3d.engine.

Stage: user -> campaign. Parsing is apart from work (``get_args_parser`` + ``main``), so a
campaign runs the same from a shell, from Python and from the tests. Settings come from
the defaults, then ``--config FILE`` (YAML or JSON, keys = option names), then the flags
given on the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from fer3d_data.errors import Fer3dDataError

log = logging.getLogger("fer3d")

# Exceptions that are the user's input, printed as one line instead of a traceback.
USER_ERRORS = (Fer3dDataError, ValueError, KeyError, FileNotFoundError, FileExistsError)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    from fer3d.engine import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS

    p = argparse.ArgumentParser(
        prog="fer3d-train", add_help=add_help,
        description="Train AFNet-M (or a variant) under the repeated subject-independent "
                    "k-fold protocol on fer3d HDF5 shards.")
    p.add_argument("shards", nargs="+", metavar="SHARD.h5", help="shard file(s) of one dataset")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON of option values; flags win")
    p.add_argument("--variant", default="afnet_m", help="model name (default afnet_m)")
    p.add_argument("--repeats", type=int, default=1, help="protocol repeats R (paper: 100)")
    p.add_argument("--folds", type=int, default=10, help="k of subject-independent k-fold")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"fixed training epochs per cell (default {DEFAULT_EPOCHS})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"default {DEFAULT_BATCH_SIZE}")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate, fixed")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"))
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="training flips and small affine warps")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/fer3d", metavar="RUN_DIR")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--preset", default="auto", choices=("auto", "bu3dfe", "bosphorus"))
    p.add_argument("--subjects", type=int, default=60, help="subjects to select (default 60)")
    p.add_argument("--val-subjects", type=int, default=0,
                   help="training subjects held out per cell to pick the epoch (default 0)")
    p.add_argument("--pretrained", default=None, metavar="PATH|imagenet",
                   help="resnet18 state dict for both branches (never downloaded)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def load_config_file(path: str) -> dict:
    """Option values from a YAML or JSON file; keys may use '-' or '_'."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of option names")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_train_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Defaults < --config file < command-line flags."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.config:
        values = load_config_file(args.config)
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(values) - known - {"shards"})
        if unknown:
            parser.error(f"{args.config}: unknown options {', '.join(unknown)}")
        values.pop("shards", None)
        parser.set_defaults(**values)
        args = parser.parse_args(argv)
    return args


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def main(args: argparse.Namespace) -> dict:
    """Run the campaign ``args`` describe; returns the summary (also printed)."""
    from fer3d import report
    from fer3d.engine import TrainConfig, run_campaign

    fields = dict(vars(args))
    for key in ("config", "verbose"):
        fields.pop(key, None)
    if fields["workers"] is None:
        fields.pop("workers")
    fields["shards"] = [os.fspath(s) for s in fields["shards"]]
    summary = run_campaign(TrainConfig(**fields))
    print(report.format_summary(summary))
    print(f"run directory: {args.out}")
    return summary


def _run(prog: str, work, argv) -> int:
    """Call ``work``; a user error is one line on stderr and exit status 2."""
    from fer3d.engine import DivergedError

    try:
        work(argv)
    except DivergedError as exc:
        print(f"{prog}: error: {exc}; rerun with --resume", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-train``."""
    def work(argv):
        args = parse_train_args(argv)
        _setup_logging(args.verbose)
        main(args)
    return _run("fer3d-train", work, argv)


def get_eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer3d-eval",
        description="Evaluate a fer3d checkpoint on shard samples (default: the test "
                    "subjects stored in the checkpoint).")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("shards", nargs="+", metavar="SHARD.h5")
    p.add_argument("--subjects", nargs="+", default=None, help="subject names to test")
    p.add_argument("--variant", default=None, help="refuse a checkpoint of another variant")
    p.add_argument("--preset", default="auto", choices=("auto", "bu3dfe", "bosphorus"))
    p.add_argument("--image-size", type=int, default=None,
                   help="default: the size the checkpoint was trained at")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"))
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--out", default=None, metavar="JSON", help="write the result here")
    return p


def eval_args_main(args: argparse.Namespace) -> dict:
    from fer3d import report
    from fer3d.engine import evaluate_checkpoint, write_json

    result = evaluate_checkpoint(
        args.checkpoint, args.shards, subjects=args.subjects, preset=args.preset,
        variant=args.variant, image_size=args.image_size, batch_size=args.batch_size,
        device=args.device, amp=args.amp, channels_last=args.channels_last,
        workers=args.workers)
    print(report.format_summary(result))
    if args.out:
        write_json(result, args.out)
    return result


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``fer3d-eval``."""
    def work(argv):
        args = get_eval_parser().parse_args(argv)
        _setup_logging(False)
        eval_args_main(args)
    return _run("fer3d-eval", work, argv)


if __name__ == "__main__":
    sys.exit(train_main())
