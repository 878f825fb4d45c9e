"""fer3d.train: one (repeat, fold) cell, from shard rows to a tested model.

Stage: training. :mod:`~fer3d.train.runtime` (device, precision, seeds, RNG states),
:mod:`~fer3d.train.transforms` (stored sample -> normalised, augmented batch),
:mod:`~fer3d.train.dataset` (the per-sample reader), :mod:`~fer3d.train.sources` (a cell's
batches: samples resident on the device, or the DataLoader), :mod:`~fer3d.train.step`
(step, epoch, prediction), :mod:`~fer3d.train.checkpoint` (what a cell keeps, and the one
weights loader), :mod:`~fer3d.train.cell` (one cell's rows, files, validation and test) and
:mod:`~fer3d.train.packed` (cells trained alone or K at a time as one network).
"""
