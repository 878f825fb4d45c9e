"""The paper's tables and figures, the model variants that make them, and every number the
paper prints, importable without torch.

Stage: command lines and reports. ``--help`` lists the variants, ``fer3d-reproduce`` knows
which campaigns a target needs and ``fer3d-report`` puts the published number beside ours,
all without importing torch. :mod:`fer3d.models` registers one builder per name here (a test
keeps the two equal). Numbering as in Sui et al. (2022): Table 1 comparison, Table 2 fusion
strategies (without MA), Table 3 MA ablation, Table 4 parameters, Fig. 4 confusion matrices,
Fig. 5 fusion positions (without MA), Fig. 6 Grad-CAM.

Published numbers are data, each under the table that prints it: our variants' accuracy
(:data:`PUBLISHED_ACCURACY`), the other methods of Table 1 (:data:`OTHER_METHODS`) and of
Table 4 (:data:`OTHER_SIZES`), our sizes (:data:`PUBLISHED_SIZE_MB`). Figs. 4 and 5 are
drawn without numbers: nothing is published for them.
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
    Variant("texture_only_ma", "Table 1: ours 2D; Table 3: 2D + MA", "2D + MA"),
    Variant("depth_only", "Table 3: 3D", "3D"),
    Variant("depth_only_ma", "Table 1: ours 3D; Table 3: 3D + MA", "3D + MA"),
    Variant("fusion_s1_data", "Table 2: S1 data level", "S1 data level"),
    Variant("fusion_s2_decision", "Table 2: S2 decision level", "S2 decision level"),
    Variant("fusion_s3_fc", "Table 2: S3 fully connected level", "S3 FC level"),
    Variant("fusion_s4_sum", "Table 2: S4 convolutional level without weights",
            "S4 conv level, no weights"),
    Variant("afnet_m_no_ma", "Table 2: AF; Table 3: 2D + 3D; Table 4: without MA; "
            "Fig. 4 (c), (d); Fig. 5: layer34; Fig. 6: without MA", "AF without MA"),
    Variant("afnet_m", "Table 1: ours 2D + 3D; Table 3, Table 4: AFNet-M; Fig. 4 (a), (b); "
            "Fig. 6", "AFNet-M"),
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
    """A table or figure of the paper: its rows as (variant, row label in the paper) and
    its ablation pairs as (variant, reference variant): the report tests row − reference."""

    name: str
    title: str
    rows: tuple[tuple[str, str], ...]
    trains: bool = True
    pairs: tuple[tuple[str, str], ...] = ()


_TABLE2_ROWS = (("fusion_s1_data", "S1"), ("fusion_s2_decision", "S2"),
                ("fusion_s3_fc", "S3 (FC)"), ("fusion_s4_sum", "S4"), ("afnet_m_no_ma", "AF"))
_FIG5_ROWS = (("afnet_m_no_ma_layer1234", "layer1234"), ("afnet_m_no_ma_layer234", "layer234"),
              ("afnet_m_no_ma", "layer34"), ("afnet_m_no_ma_layer4", "layer4"))
TARGETS = {
    # Table 1's "data" column is our row label; its other methods are OTHER_METHODS.
    "table1": Target("table1", "Table 1: comparison with other methods",
                     (("texture_only_ma", "2D"), ("depth_only_ma", "3D"),
                      ("afnet_m", "2D+3D"))),
    "table2": Target("table2", "Table 2: fusion strategies (without MA)", _TABLE2_ROWS,
                     pairs=tuple((v, "afnet_m_no_ma") for v, _ in _TABLE2_ROWS[:-1])),
    "table3": Target("table3", "Table 3: mask attention ablation",
                     (("texture_only", "2D"), ("texture_only_ma", "2D + MA"),
                      ("depth_only", "3D"), ("depth_only_ma", "3D + MA"),
                      ("afnet_m_no_ma", "2D + 3D"), ("afnet_m", "2D + 3D + MA (AFNet-M)")),
                     pairs=(("texture_only_ma", "texture_only"), ("depth_only_ma", "depth_only"),
                            ("afnet_m", "afnet_m_no_ma"))),
    "table4": Target("table4", "Table 4: parameters (Params size, MB)",
                     (("afnet_m", "AFNet-M"), ("afnet_m_no_ma", "without MA"),
                      ("fusion_s4_sum_ma", "without AF")), trains=False),
    # Panels (a), (b): AFNet-M on BU-3DFE, Bosphorus; (c), (d): without MA, compared with them.
    "fig4": Target("fig4", "Fig. 4: confusion matrices, AFNet-M (a, b) and without MA (c, d)",
                   (("afnet_m", "AFNet-M"), ("afnet_m_no_ma", "without MA")),
                   pairs=(("afnet_m", "afnet_m_no_ma"),)),
    "fig5": Target("fig5", "Fig. 5: fusion positions (AF without MA)", _FIG5_ROWS,
                   pairs=tuple((v, "afnet_m_no_ma") for v, label in _FIG5_ROWS
                               if label != "layer34")),
    "fig6": Target("fig6", "Fig. 6: Grad-CAM of both branches, with and without MA",
                   (("afnet_m", "with MA"), ("afnet_m_no_ma", "without MA"))),
}
TARGET_NAMES = (*TARGETS, "all")

# ----------------------------------------------------------------------- published numbers

# Our variants' accuracy (%) as printed, per table: variant -> (BU-3DFE, Bosphorus).
PUBLISHED_ACCURACY = {
    "table1": {"texture_only_ma": (87.68, 85.42), "depth_only_ma": (86.97, 82.06),
               "afnet_m": (90.08, 88.31)},
    "table2": {"fusion_s1_data": (86.54, 85.08), "fusion_s2_decision": (86.28, 84.36),
               "fusion_s3_fc": (87.61, 85.54), "fusion_s4_sum": (88.12, 86.17),
               "afnet_m_no_ma": (88.89, 87.11)},
    "table3": {"texture_only": (85.06, 82.69), "texture_only_ma": (87.68, 85.42),
               "depth_only": (84.37, 80.58), "depth_only_ma": (86.97, 82.06),
               "afnet_m_no_ma": (88.89, 87.11), "afnet_m": (90.08, 88.31)},
}
# Table 4, "Params size (MB)" in torchsummary's unit (docs/model.md).
PUBLISHED_SIZE_MB = {"afnet_m": 91.54, "afnet_m_no_ma": 90.51, "fusion_s4_sum_ma": 86.53}


@dataclass(frozen=True)
class Method:
    """Another method's row of Table 1 or 4 as published: fer3d does not run it.

    ``ref`` is the paper's citation number; ``accuracy`` (%) is (BU-3DFE, Bosphorus), None
    where the paper prints "-"; ``size_mb`` is Table 4's approximate ("≈") size.
    """

    name: str
    ref: int
    year: int
    data: str
    feature: str = "DL"
    accuracy: tuple[float | None, float | None] = (None, None)
    size_mb: float | None = None

    @property
    def label(self) -> str:
        return f"{self.name} [{self.ref}]"


OTHER_METHODS = (  # Table 1, in the paper's order; HC hand-crafted, DL deep features
    Method("Li et al.", 13, 2012, "3D", "HC", (80.14, 75.83)),
    Method("Yang et al.", 14, 2015, "3D", "HC", (84.80, 77.50)),
    Method("Li et al.", 15, 2015, "2D+3D", "HC", (86.32, 79.72)),
    Method("Fu et al.", 16, 2019, "2D+3D", "HC", (82.89, 75.93)),
    Method("Li et al.", 4, 2017, "2D+3D", "DL", (86.86, 80.28)),
    Method("Jan et al.", 5, 2018, "2D+3D", "DL", (88.54, None)),
    Method("Tian et al.", 6, 2019, "2D+3D", "DL", (None, 79.17)),
    Method("Jiao et al. (FA-CNN)", 7, 2019, "2D+3D", "DL", (89.11, None)),
    Method("Zhu et al.", 8, 2019, "2D+3D", "DL", (88.35, None)),
    Method("Jiao et al.", 9, 2020, "2D+3D", "DL", (89.72, 83.63)),
    Method("Zhu et al.", 10, 2020, "2D+3D", "DL", (88.75, None)),
    Method("Sui et al. (FFNet-M)", 11, 2021, "2D+3D", "DL", (89.82, 87.65)),
    Method("Ni et al.", 12, 2022, "2D+3D", "DL", (88.91, 85.16)),
)
OTHER_SIZES = (  # Table 4, printed as approximate ("≈ 327")
    Method("VGG-M-DF", 5, 2018, "2D+3D", size_mb=327.0),
    Method("DA-CNN", 8, 2019, "2D+3D", size_mb=463.0),
    Method("FFNet-M", 11, 2021, "2D+3D", size_mb=93.0),
)


def target_variants(target: str) -> list[str]:
    """Variants whose campaigns ``target`` needs ("all": every target's), first use first."""
    if target not in TARGET_NAMES:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGET_NAMES)}")
    chosen = TARGETS.values() if target == "all" else [TARGETS[target]]
    names = [v for t in chosen if t.trains for v, _ in t.rows]
    return list(dict.fromkeys(names))


def published_accuracy(variant: str, dataset: str, target: str | None = None) -> float | None:
    """The accuracy (%) the paper prints for ``variant`` on ``dataset`` in ``target`` (None:
    in the first table that has it); None when it prints none (Figs. 4 and 5: drawn)."""
    tables = [target] if target else list(PUBLISHED_ACCURACY)
    for name in tables:
        pair = PUBLISHED_ACCURACY.get(name, {}).get(variant)
        if pair is not None:
            return pair[DATASETS.index(dataset)] if dataset in DATASETS else None
    return None


def published_delta(variant: str, reference: str, dataset: str, target: str) -> float | None:
    """The paper's ``variant`` − ``reference`` in ``target`` (points), None if either is
    not printed there."""
    a = published_accuracy(variant, dataset, target)
    b = published_accuracy(reference, dataset, target)
    return None if a is None or b is None else round(a - b, 2)
