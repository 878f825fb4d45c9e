"""Names of the registered model variants, importable without torch.

Stage: command lines. ``--help`` lists the variants without importing torch; a test keeps
this list equal to :func:`fer3d.models.list_models`.
"""

VARIANT_NAMES = (
    "texture_only", "texture_only_ma", "depth_only", "depth_only_ma",
    "fusion_s1_data", "fusion_s2_decision", "fusion_s3_fc", "fusion_s4_sum",
    "afnet_m_no_ma", "afnet_m",
    "afnet_m_layer1234", "afnet_m_layer234", "afnet_m_layer34", "afnet_m_layer4",
)
