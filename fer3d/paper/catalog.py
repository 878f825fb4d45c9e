"""The paper's tables and figures, the model variants that make them, and the published
numbers, importable without torch.

Stage: command lines and reports. ``--help`` lists the variants, ``fer3d-reproduce`` knows
which campaigns a target needs and ``fer3d-report`` puts the published number beside ours,
all without importing torch. :mod:`fer3d.models` registers one builder per name here (a test
keeps the two equal). Numbering as in Sui et al. (2022): Table 1 comparison, Table 2 fusion
strategies (without MA), Table 3 MA ablation, Table 4 parameters, Fig. 4 confusion matrices,
Fig. 5 fusion positions (without MA), Fig. 6 Grad-CAM.

Published numbers are only those we are certain of (docs/reproduce.md lists the blanks).
"""

from __future__ import annotations

from dataclasses import dataclass

DATASETS = ("bu3dfe", "bosphorus")
DATASET_TITLES = {"bu3dfe": "BU-3DFE", "bosphorus": "Bosphorus"}


@dataclass(frozen=True)
class Variant:
    """A registered model: ``paper`` says which table row it reproduces ("" for extras)."""

    name: str
    paper: str
    label: str


VARIANTS = (
    Variant("texture_only", "Table 3: 2D", "2D"),
    Variant("texture_only_ma", "Table 3: 2D + MA", "2D + MA"),
    Variant("depth_only", "Table 3: 3D", "3D"),
    Variant("depth_only_ma", "Table 3: 3D + MA", "3D + MA"),
    Variant("fusion_s1_data", "Table 2: S1 data level", "S1 data level"),
    Variant("fusion_s2_decision", "Table 2: S2 decision level", "S2 decision level"),
    Variant("fusion_s3_fc", "Table 2: S3 fully connected level", "S3 FC level"),
    Variant("fusion_s4_sum", "Table 2: S4 convolutional level without weights",
            "S4 conv level, no weights"),
    Variant("afnet_m_no_ma", "Table 2: AF; Table 3: 2D + 3D; Table 4: without MA; "
            "Fig. 5: layer34; Fig. 6: without MA", "AF without MA"),
    Variant("afnet_m", "Table 1, Table 3, Table 4: AFNet-M; Fig. 4; Fig. 6", "AFNet-M"),
    Variant("afnet_m_no_ma_layer1234", "Fig. 5: layer1234", "AF after layer1234"),
    Variant("afnet_m_no_ma_layer234", "Fig. 5: layer234", "AF after layer234"),
    Variant("afnet_m_no_ma_layer4", "Fig. 5: layer4", "AF after layer4"),
    Variant("fusion_s4_sum_ma", "Table 4: without AF", "without AF (S4 + MA)"),
    # Extras, not in the paper: the fusion strategies and positions with MA.
    Variant("fusion_s1_data_ma", "", "S1 + MA"),
    Variant("fusion_s2_decision_ma", "", "S2 + MA"),
    Variant("fusion_s3_fc_ma", "", "S3 + MA"),
    Variant("afnet_m_layer1234", "", "AFNet-M, AF after layer1234"),
    Variant("afnet_m_layer234", "", "AFNet-M, AF after layer234"),
    Variant("afnet_m_layer4", "", "AFNet-M, AF after layer4"),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}


@dataclass(frozen=True)
class Target:
    """A table or figure of the paper: its rows as (variant, row label in the paper)."""

    name: str
    title: str
    rows: tuple[tuple[str, str], ...]
    trains: bool = True


TARGETS = {
    "table1": Target("table1", "Table 1: comparison with other methods (our row)",
                     (("afnet_m", "AFNet-M"),)),
    "table2": Target("table2", "Table 2: fusion strategies (without MA)",
                     (("fusion_s1_data", "S1"), ("fusion_s2_decision", "S2"),
                      ("fusion_s3_fc", "S3"), ("fusion_s4_sum", "S4"),
                      ("afnet_m_no_ma", "AF"))),
    "table3": Target("table3", "Table 3: mask attention ablation",
                     (("texture_only", "2D"), ("texture_only_ma", "2D + MA"),
                      ("depth_only", "3D"), ("depth_only_ma", "3D + MA"),
                      ("afnet_m_no_ma", "2D + 3D"), ("afnet_m", "2D + 3D + MA (AFNet-M)"))),
    "table4": Target("table4", "Table 4: parameters (Params size, MB)",
                     (("afnet_m", "AFNet-M"), ("afnet_m_no_ma", "without MA"),
                      ("fusion_s4_sum_ma", "without AF")), trains=False),
    "fig4": Target("fig4", "Fig. 4: confusion matrices of AFNet-M", (("afnet_m", "AFNet-M"),)),
    "fig5": Target("fig5", "Fig. 5: fusion positions (AF without MA)",
                   (("afnet_m_no_ma_layer1234", "layer1234"),
                    ("afnet_m_no_ma_layer234", "layer234"),
                    ("afnet_m_no_ma", "layer34"), ("afnet_m_no_ma_layer4", "layer4"))),
    "fig6": Target("fig6", "Fig. 6: Grad-CAM of both branches, with and without MA",
                   (("afnet_m", "with MA"), ("afnet_m_no_ma", "without MA"))),
}
TARGET_NAMES = (*TARGETS, "all")

# Accuracy (%) as published, per variant and dataset; a missing entry is a blank in our
# tables, never a guess.
PUBLISHED_ACCURACY = {"afnet_m": {"bu3dfe": 90.08, "bosphorus": 88.31}}
# Table 4, "Params size (MB)" in torchsummary's unit (docs/model.md).
PUBLISHED_SIZE_MB = {"afnet_m": 91.54, "afnet_m_no_ma": 90.51, "fusion_s4_sum_ma": 86.53}


def target_variants(target: str) -> list[str]:
    """Variants whose campaigns ``target`` needs ("all": every target's), first use first."""
    if target not in TARGET_NAMES:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGET_NAMES)}")
    chosen = TARGETS.values() if target == "all" else [TARGETS[target]]
    names = [v for t in chosen if t.trains for v, _ in t.rows]
    return list(dict.fromkeys(names))


def published_accuracy(variant: str, dataset: str) -> float | None:
    """The paper's accuracy (%) for ``variant`` on ``dataset``, or None when we have none."""
    return PUBLISHED_ACCURACY.get(variant, {}).get(dataset)
