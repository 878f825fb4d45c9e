"""Parameter counts of every registered model, beside the paper's Table 4.

Stage: benchmarks (docs/model.md). For each model: distinct parameters, their fp32 size in
MB (1e6 bytes) and MiB (2**20 bytes), and the size in the paper's unit (torchsummary's
"Params size (MB)": per-call count * 4 / 2**20, see :func:`fer3d.models.param_size_mib`).
Prints JSON, then a markdown table; ``--json PATH`` also writes the JSON.

    python benchmarks/params_table.py            # all models, 224x224
    python benchmarks/params_table.py --table4   # AFNet-M, without MA, without AF only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fer3d.models import (
    count_parameters,
    create_model,
    describe_models,
    list_models,
    param_size_mib,
)

# Table 4 of Sui et al. (2022): the paper's row name -> (our model, reported MB)
PAPER_TABLE4 = {
    "AFNet-M": ("afnet_m", 91.54),
    "without MA": ("afnet_m_no_ma", 90.51),
    "without AF": ("fusion_s4_sum", 86.53),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, default=224, help="input side S (the count does not depend on it)"
    )
    parser.add_argument("--num-classes", type=int, default=6)
    parser.add_argument(
        "--table4", action="store_true", help="only the three models of the paper's Table 4"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return parser


def measure(name: str, size: int, num_classes: int) -> dict:
    """One model's counts: distinct parameters, MB, MiB and the paper's unit."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes)
    image = torch.rand(1, 3, size, size)
    inputs = (image, image, torch.rand(1, 1, size // 4, size // 4))
    params = count_parameters(model)
    return {
        "model": name,
        "description": describe_models()[name],
        "params": params,
        "fp32_mb": round(params * 4 / 1e6, 4),
        "fp32_mib": round(params * 4 / 2**20, 4),
        "paper_unit_mb": round(param_size_mib(model, *inputs), 4),
    }


def main(args: argparse.Namespace) -> dict:
    names = [model for model, _ in PAPER_TABLE4.values()] if args.table4 else list_models()
    rows = [measure(name, args.size, args.num_classes) for name in names]
    paper = {model: (row, value) for row, (model, value) in PAPER_TABLE4.items()}
    for row in rows:
        if row["model"] in paper:
            row["paper_row"], row["paper_mb"] = paper[row["model"]]
            row["diff_mb"] = round(row["paper_unit_mb"] - row["paper_mb"], 4)
    result = {"input_size": args.size, "num_classes": args.num_classes, "models": rows}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print()
    print("| model | params | fp32 MB (1e6) | fp32 MiB | paper unit (MB) | Table 4 (MB) | diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        table4 = f"{row['paper_mb']:.2f} ({row['paper_row']})" if "paper_mb" in row else ""
        diff = f"{row['diff_mb']:+.2f}" if "diff_mb" in row else ""
        print(
            f"| {row['model']} | {row['params']:,} | {row['fp32_mb']:.2f} | {row['fp32_mib']:.2f} "
            f"| {row['paper_unit_mb']:.2f} | {table4} | {diff} |"
        )
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
