"""Surface processing: one scan's points -> a cleaned, cropped, frontal surface sampled
on a regular grid (depth by gridfit, texture resampled pixel-for-pixel).

Stage: preprocessing, between the raw readers and the masks/shards.
"""

from .grid import Grid

__all__ = ["Grid"]
