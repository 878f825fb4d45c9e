"""Names and versions shared by the shard writer (fer3d_data) and its readers (fer3d).

Stage: HDF5 shard schema. Documented in docs/shards.md; bump FORMAT_VERSION on any
change a reader would notice.
"""

FORMAT = "fer3d-shard"
# 2: stored SHA-256 digests (root attribute digests), index chunks of one row.
# 3: labels as data (/index/label codes into root attribute class_names), /index/sequence
#    and /index/frame, root attribute masks.
FORMAT_VERSION = 3

# The expression classes of BU-3DFE and Bosphorus, in their fixed order: the six basic
# expressions first so that 6-class training uses codes 0..5 directly; neutral is 6. Other
# collections bring their own label names (root attribute class_names).
CLASS_NAMES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
EXPRESSIONS = CLASS_NAMES[:6]
NEUTRAL = "neutral"
CLASS_CODE = {name: i for i, name in enumerate(CLASS_NAMES)}

# Intensity code for scans that are not graded (all of Bosphorus).
INTENSITY_UNGRADED = -1

# Sides S a shard's grid may have (PrepConfig.image_size): AFNet-M attends with masks at
# S/4, so S is a multiple of 4; one scan's preprocessing memory grows with S^2 (6.8 GB at
# S = 2048), so S stays at most 1024 (docs/preprocessing.md).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, IMAGE_SIZE_STEP = 8, 1024, 4

# Index columns every shard holds (the per-sample datasets: fer3d_data.shards.array_spec).
INDEX_COLUMNS = ("sample_id", "subject", "expression", "intensity", "source", "mask_source",
                 "label", "sequence", "frame")
# Shards written before labels were data (and hand-made ones) lack these; readers fall back
# to the expression codes, no sequence and no frame.
LABEL_COLUMNS = ("label", "sequence", "frame")

# /index/frame of a sample outside any sequence; /index/expression of a scan whose label is
# not one of CLASS_NAMES.
NO_FRAME = -1
NO_EXPRESSION = -1

# Root attribute ``masks``: salient-region masks from landmarks, or none at all (every mask
# zero; mask-attention variants must not train on such a shard).
MASKS = ("landmarks", "none")
