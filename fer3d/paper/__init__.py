"""fer3d.paper: the paper's tables and figures (Sui et al., 2022) and how to make them.

Stage: campaigns -> the paper's evidence. :mod:`~fer3d.paper.catalog` (torch-free) lists
the targets, the variants each needs and every published number; :mod:`~fer3d.paper.recipes`
the paper's settings; :mod:`~fer3d.paper.reproduce` runs the campaigns of a target and
builds it; :mod:`~fer3d.paper.params` measures Table 4; :mod:`~fer3d.paper.cam` draws
Fig. 6 (Grad-CAM). Importing the package imports no torch.
"""
