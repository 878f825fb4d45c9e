"""Preprocessing: raw scans -> samples -> one shard.

Stage: preprocessing driver. ``config`` holds every parameter (:class:`PrepConfig`);
``process`` turns one scan into one :class:`Sample` (:func:`read_raw_scan` by the scan's
dataset adapter, then the chain of :func:`process_scan`); ``runner`` runs that over many
scans in a process pool (or on a Ray cluster) and writes the shard (:func:`run_prep`);
``command`` holds the ``fer3d-prep <dataset>`` commands.
"""

from ..datasets import RawScan
from .config import PrepConfig
from .process import Sample, process_scan, read_raw_scan, step
from .runner import STEP_TIMEOUT, STEP_UNEXPECTED, STEP_WORKER, PrepSummary, run_prep, source_of

__all__ = [
    "PrepConfig", "PrepSummary", "RawScan", "STEP_TIMEOUT", "STEP_UNEXPECTED",
    "STEP_WORKER", "Sample", "process_scan", "read_raw_scan", "run_prep", "source_of", "step",
]
