"""fer3d_data: raw BU-3DFE / Bosphorus scans to documented HDF5 shards.

Stage: everything before training. Readers (:mod:`fer3d_data.io`), dataset walkers
(:mod:`fer3d_data.datasets`), surface processing (:mod:`fer3d_data.surface`), masks,
shards and the ``fer3d-prep`` CLI. This package never imports torch: its shards are
readable with plain h5py from any project.
"""

__version__ = "0.1.0"
