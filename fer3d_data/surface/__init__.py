"""Surface processing: one scan's points -> a cleaned, cropped, frontal surface sampled
on a regular grid (depth by gridfit, texture resampled pixel-for-pixel).

Stage: preprocessing, between the raw readers and the masks/shards.
"""

from .clean import (
    clean_points,
    depth_spikes,
    finite_points,
    grid_depth_spikes,
    statistical_outliers,
)
from .grid import Grid
from .gridfit import GridFitter, gridfit
from .pose import apply_pose, crop_sphere, frontal_rotation, nose_tip
from .texture import rasterize, surface_uv_from_mesh, texture_from_grid, texture_from_mesh

__all__ = [
    "Grid", "GridFitter", "apply_pose", "clean_points", "crop_sphere", "depth_spikes",
    "finite_points", "frontal_rotation", "grid_depth_spikes", "gridfit", "nose_tip", "rasterize",
    "statistical_outliers",
    "surface_uv_from_mesh", "texture_from_grid", "texture_from_mesh",
]
