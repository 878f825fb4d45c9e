"""Facts of the two datasets, stated once: file-name codes and landmark names.

Stage: shared by the raw readers, the dataset walkers, the synthetic generator and the
command line. Source: the file names and landmark files of each dataset (docs/formats.md).
"""

from __future__ import annotations

from .schema import CLASS_NAMES, NEUTRAL

# BU-3DFE file names spell the expression as two letters: F0001_AN04WH_F3D.wrl.
BU3DFE_EXPRESSION_CODES = dict(zip(("AN", "DI", "FE", "HA", "SA", "SU", "NE"), CLASS_NAMES))
# ... and the subject's ethnicity as two letters after the intensity (kept opaque).
BU3DFE_RACE_CODES = ("WH", "AE", "BL", "LA", "IN", "AM")

# Bosphorus capture class+code of the six emotions and the neutral scan.
BOSPHORUS_CAPTURES = {NEUTRAL: "N_N", "anger": "E_ANGER", "disgust": "E_DISGUST", "fear": "E_FEAR",
                      "happiness": "E_HAPPY", "sadness": "E_SADNESS", "surprise": "E_SURPRISE"}

# The 22 facial points a Bosphorus .lm3 names; "left" is image-left (the subject's right).
# A scan names only the points it has (occluded ones are left out).
BOSPHORUS_FACE_LANDMARKS = (
    "Outer left eyebrow", "Middle left eyebrow", "Inner left eyebrow",
    "Inner right eyebrow", "Middle right eyebrow", "Outer right eyebrow",
    "Outer left eye corner", "Inner left eye corner",
    "Inner right eye corner", "Outer right eye corner",
    "Nose saddle left", "Nose saddle right",
    "Left nose peak", "Nose tip", "Right nose peak",
    "Left mouth corner", "Upper lip outer middle", "Right mouth corner",
    "Upper lip inner middle", "Lower lip inner middle", "Lower lip outer middle",
    "Chin middle",
)
# Up to two ear lobes follow in some files (their exact spelling is not documented).
BOSPHORUS_EAR_LOBES = ("Left ear lobe", "Right ear lobe")
# Row order of a Bosphorus shard's /landmarks.
BOSPHORUS_LANDMARK_NAMES = BOSPHORUS_FACE_LANDMARKS + BOSPHORUS_EAR_LOBES
