"""Names and versions shared by the shard writer (fer3d_data) and its readers (fer3d).

Stage: HDF5 shard schema. Documented in docs/shards.md; bump FORMAT_VERSION on any
change a reader would notice.
"""

FORMAT = "fer3d-shard"
FORMAT_VERSION = 2  # 2: stored SHA-256 digests (root attribute digests), index chunks of one row

# Fixed label order. The six basic expressions come first so that 6-class training
# uses codes 0..5 directly; neutral is 6.
CLASS_NAMES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
EXPRESSIONS = CLASS_NAMES[:6]
NEUTRAL = "neutral"
CLASS_CODE = {name: i for i, name in enumerate(CLASS_NAMES)}

# Intensity code for scans that are not graded (all of Bosphorus).
INTENSITY_UNGRADED = -1

DATASETS = ("bu3dfe", "bosphorus")

# Sides S a shard's grid may have (PrepConfig.image_size): AFNet-M attends with masks at
# S/4, so S is a multiple of 4; one scan's preprocessing memory grows with S^2 (6.8 GB at
# S = 2048), so S stays at most 1024 (docs/preprocessing.md).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, IMAGE_SIZE_STEP = 8, 1024, 4

# Index columns every shard holds (the per-sample datasets: fer3d_data.shards.array_spec).
INDEX_COLUMNS = ("sample_id", "subject", "expression", "intensity", "source", "mask_source")
