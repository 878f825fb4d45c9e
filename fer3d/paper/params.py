"""Parameter counts of the registered models beside the paper's Table 4.

Stage: models -> Table 4 (needs torch; no training). Per model: distinct parameters, fp32
size in MB (1e6 bytes) and MiB, and the size in the paper's unit (torchsummary's "Params
size (MB)", :func:`fer3d.models.param_size_mib`; docs/model.md explains the unit).
"""

from __future__ import annotations

from fer3d.paper.catalog import PUBLISHED_SIZE_MB, TARGETS


def measure(name: str, size: int = 224, num_classes: int = 6) -> dict:
    """One model's counts: distinct parameters, MB, MiB and the paper's unit."""
    import torch

    from fer3d.models import count_parameters, create_model, paper_tag, param_size_mib

    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes)
    image = torch.rand(1, 3, size, size)
    inputs = (image, image, torch.rand(1, 1, size // 4, size // 4))
    params = count_parameters(model)
    return {"model": name, "paper": paper_tag(name), "params": params,
            "fp32_mb": round(params * 4 / 1e6, 4), "fp32_mib": round(params * 4 / 2**20, 4),
            "paper_unit_mb": round(param_size_mib(model, *inputs), 4)}


def measure_table4(size: int = 224, num_classes: int = 6) -> list[dict]:
    """The paper's three Table 4 rows, ours measured, the published size beside."""
    rows = []
    for variant, row in TARGETS["table4"].rows:
        r = measure(variant, size, num_classes)
        r.update(paper_row=row, paper_mb=PUBLISHED_SIZE_MB[variant],
                 diff_mb=round(r["paper_unit_mb"] - PUBLISHED_SIZE_MB[variant], 4))
        rows.append(r)
    return rows
