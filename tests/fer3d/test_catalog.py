"""fer3d.paper.catalog: the paper's numbering, which campaigns each target needs, and the
published numbers (only those we are certain of)."""

from __future__ import annotations

import pytest

from fer3d.paper import catalog


def test_targets_need_the_papers_campaigns():
    assert catalog.target_variants("table1") == ["afnet_m"]
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


def test_published_numbers_are_the_known_ones():
    assert catalog.published_accuracy("afnet_m", "bu3dfe") == 90.08
    assert catalog.published_accuracy("afnet_m", "bosphorus") == 88.31
    assert catalog.published_accuracy("fusion_s1_data", "bu3dfe") is None
    assert catalog.PUBLISHED_SIZE_MB == {"afnet_m": 91.54, "afnet_m_no_ma": 90.51,
                                         "fusion_s4_sum_ma": 86.53}
    assert set(catalog.PUBLISHED_SIZE_MB) == {v for v, _ in catalog.TARGETS["table4"].rows}
