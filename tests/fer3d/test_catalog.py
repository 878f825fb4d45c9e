"""fer3d.paper.catalog: the paper's numbering, which campaigns each target needs, and every
number the paper prints, pinned here as printed (Sui et al., 2022, Tables 1-4)."""

from __future__ import annotations

import pytest

from fer3d.paper import catalog


def test_targets_need_the_papers_campaigns():
    assert catalog.target_variants("table1") == ["texture_only_ma", "depth_only_ma", "afnet_m"]
    assert catalog.target_variants("fig4") == ["afnet_m", "afnet_m_no_ma"]
    assert catalog.target_variants("table2") == ["fusion_s1_data", "fusion_s2_decision",
                                                 "fusion_s3_fc", "fusion_s4_sum", "afnet_m_no_ma"]
    assert catalog.target_variants("fig5") == ["afnet_m_no_ma_layer1234", "afnet_m_no_ma_layer234",
                                               "afnet_m_no_ma", "afnet_m_no_ma_layer4"]
    assert catalog.target_variants("table4") == []  # counted, not trained
    every = catalog.target_variants("all")
    assert len(every) == len(set(every)) == 13
    assert not {"fusion_s4_sum_ma", "afnet_m_layer4"} & set(every)
    with pytest.raises(ValueError, match="unknown target 'table5'.*table1.*all"):
        catalog.target_variants("table5")


def test_every_paper_row_is_tagged_and_extras_are_not():
    for target in catalog.TARGETS.values():
        for variant, _ in target.rows:
            assert catalog.VARIANT_BY_NAME[variant].paper, (target.name, variant)
    rows = {v for t in catalog.TARGETS.values() for v, _ in t.rows}
    untagged = {v.name for v in catalog.VARIANTS if not v.paper}
    assert not rows & untagged and all(name.endswith(("_ma", "layer1234", "layer234", "layer4"))
                                       for name in untagged)


def test_our_published_accuracies_as_printed():
    assert catalog.PUBLISHED_ACCURACY == {
        "table1": {"texture_only_ma": (87.68, 85.42), "depth_only_ma": (86.97, 82.06),
                   "afnet_m": (90.08, 88.31)},
        "table2": {"fusion_s1_data": (86.54, 85.08), "fusion_s2_decision": (86.28, 84.36),
                   "fusion_s3_fc": (87.61, 85.54), "fusion_s4_sum": (88.12, 86.17),
                   "afnet_m_no_ma": (88.89, 87.11)},
        "table3": {"texture_only": (85.06, 82.69), "texture_only_ma": (87.68, 85.42),
                   "depth_only": (84.37, 80.58), "depth_only_ma": (86.97, 82.06),
                   "afnet_m_no_ma": (88.89, 87.11), "afnet_m": (90.08, 88.31)},
    }
    # every row of Tables 1-3 has its number, and only those rows
    for table, numbers in catalog.PUBLISHED_ACCURACY.items():
        assert set(numbers) == {v for v, _ in catalog.TARGETS[table].rows}, table
    assert catalog.published_accuracy("afnet_m", "bosphorus") == 88.31
    assert catalog.published_accuracy("fusion_s1_data", "bu3dfe", "table2") == 86.54
    assert catalog.published_accuracy("fusion_s1_data", "bu3dfe", "table3") is None


def test_a_variant_prints_the_same_number_in_every_table():
    """Ours 2D / 3D of Table 1 are Table 3's single-modality rows with MA; Table 2's AF is
    Table 3's 2D + 3D; the paper's text: MA adds 1.19 and 1.2 points under 2D + 3D."""
    for variant in catalog.VARIANT_NAMES:
        for dataset in catalog.DATASETS:
            found = {catalog.published_accuracy(variant, dataset, t)
                     for t in catalog.PUBLISHED_ACCURACY} - {None}
            assert len(found) <= 1, (variant, dataset, found)
    assert catalog.published_delta("afnet_m", "afnet_m_no_ma", "bu3dfe", "table3") == 1.19
    assert catalog.published_delta("afnet_m", "afnet_m_no_ma", "bosphorus", "table3") == 1.2


def test_figures_print_no_number():
    for target in ("fig4", "fig5"):
        for variant, _ in catalog.TARGETS[target].rows:
            assert catalog.published_accuracy(variant, "bu3dfe", target) is None
    assert catalog.published_delta("afnet_m_no_ma_layer4", "afnet_m_no_ma", "bu3dfe",
                                   "fig5") is None


def test_other_methods_as_printed():
    rows = [(m.label, m.year, m.data, m.feature, m.accuracy) for m in catalog.OTHER_METHODS]
    assert rows == [
        ("Li et al. [13]", 2012, "3D", "HC", (80.14, 75.83)),
        ("Yang et al. [14]", 2015, "3D", "HC", (84.80, 77.50)),
        ("Li et al. [15]", 2015, "2D+3D", "HC", (86.32, 79.72)),
        ("Fu et al. [16]", 2019, "2D+3D", "HC", (82.89, 75.93)),
        ("Li et al. [4]", 2017, "2D+3D", "DL", (86.86, 80.28)),
        ("Jan et al. [5]", 2018, "2D+3D", "DL", (88.54, None)),
        ("Tian et al. [6]", 2019, "2D+3D", "DL", (None, 79.17)),
        ("Jiao et al. (FA-CNN) [7]", 2019, "2D+3D", "DL", (89.11, None)),
        ("Zhu et al. [8]", 2019, "2D+3D", "DL", (88.35, None)),
        ("Jiao et al. [9]", 2020, "2D+3D", "DL", (89.72, 83.63)),
        ("Zhu et al. [10]", 2020, "2D+3D", "DL", (88.75, None)),
        ("Sui et al. (FFNet-M) [11]", 2021, "2D+3D", "DL", (89.82, 87.65)),
        ("Ni et al. [12]", 2022, "2D+3D", "DL", (88.91, 85.16)),
    ]
    sizes = [(m.label, m.year, m.data, m.size_mb) for m in catalog.OTHER_SIZES]
    assert sizes == [("VGG-M-DF [5]", 2018, "2D+3D", 327.0), ("DA-CNN [8]", 2019, "2D+3D", 463.0),
                     ("FFNet-M [11]", 2021, "2D+3D", 93.0)]
    assert catalog.PUBLISHED_SIZE_MB == {"afnet_m": 91.54, "afnet_m_no_ma": 90.51,
                                         "fusion_s4_sum_ma": 86.53}
    assert set(catalog.PUBLISHED_SIZE_MB) == {v for v, _ in catalog.TARGETS["table4"].rows}


def test_ablation_pairs_are_the_papers():
    pairs = {t: catalog.TARGETS[t].pairs for t in ("table2", "table3", "fig4", "fig5")}
    assert pairs["table2"] == tuple((v, "afnet_m_no_ma") for v in (
        "fusion_s1_data", "fusion_s2_decision", "fusion_s3_fc", "fusion_s4_sum"))
    assert pairs["table3"] == (("texture_only_ma", "texture_only"), ("depth_only_ma", "depth_only"),
                               ("afnet_m", "afnet_m_no_ma"))
    assert pairs["fig4"] == (("afnet_m", "afnet_m_no_ma"),)
    assert pairs["fig5"] == tuple((v, "afnet_m_no_ma") for v in (
        "afnet_m_no_ma_layer1234", "afnet_m_no_ma_layer234", "afnet_m_no_ma_layer4"))
    for target, found in pairs.items():
        rows = {v for v, _ in catalog.TARGETS[target].rows}
        assert all(a in rows and b in rows for a, b in found), target
