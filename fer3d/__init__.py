"""fer3d: AFNet-M for 2D+3D facial expression recognition, trained and evaluated under the
repeated subject-independent k-fold protocol.

Stage: everything after preprocessing; it reads the HDF5 shards written by
:mod:`fer3d_data` and never parses raw scans. Subpackages by concern:

- :mod:`fer3d.models`    AFNet-M, the paper's ablation variants, the registry
- :mod:`fer3d.train`     one (repeat, fold) cell: runtime, inputs, step, checkpoints
- :mod:`fer3d.campaign`  protocol, run directory, plans, claims, executors, summaries
- :mod:`fer3d.report`    finished runs -> tables and figures
- :mod:`fer3d.paper`     the paper's targets, published numbers, recipes, Grad-CAM
- :mod:`fer3d.predict`   using trained weights on other samples
- :mod:`fer3d.cli`       the command lines

Shared by all: :mod:`fer3d.settings` (the settings table), :mod:`fer3d.errors` (the error
root) and :mod:`fer3d.metrics`.
"""

__version__ = "0.1.0"
