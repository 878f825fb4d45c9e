"""fer3d: training and evaluation of AFNet-M for 2D+3D facial expression recognition.

Stage: everything after preprocessing. It reads the HDF5 shards written by
:mod:`fer3d_data` (:mod:`fer3d.data`), splits subjects for the repeated
subject-independent k-fold protocol (:mod:`fer3d.protocol`), builds AFNet-M and the
paper's ablations by name (:mod:`fer3d.models`), trains and evaluates them
(:mod:`fer3d.engine`) and turns runs into tables and figures (:mod:`fer3d.report`).
It never parses raw scans.
"""

__version__ = "0.1.0"
