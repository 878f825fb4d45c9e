"""fer3d_data: raw 3D face scans (BU-3DFE, Bosphorus, any labelled folder) to documented
HDF5 shards.

Stage: everything before training. Readers (:mod:`fer3d_data.io`), dataset adapters
(:mod:`fer3d_data.datasets`), landmark schemes, surface processing
(:mod:`fer3d_data.surface`), masks, shards and the ``fer3d-prep`` CLI. This package never
imports torch: its shards are readable with plain h5py from any project.
"""

__version__ = "0.1.0"
