"""One record per raw scan, as the dataset walkers yield them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ScanRecord:
    """Where a scan's files are and what it shows.

    dataset      "bu3dfe" or "bosphorus".
    scan_id      file stem without the type suffix: "F0001_AN01WH", "bs000_E_ANGER_0".
    subject      "F0001", "bs000".
    expression   a name of fer3d_data.schema.CLASS_NAMES, or None for a Bosphorus capture
                 that is no expression (action units, poses, occlusions).
    intensity    0-4 for BU-3DFE (neutral 0), schema.INTENSITY_UNGRADED for Bosphorus.
    sex          "F"/"M" (BU-3DFE), None otherwise.
    ethnicity    BU-3DFE race code ("WH", ...) kept opaque, None otherwise.
    capture      Bosphorus class+code ("E_ANGER", "N_N", "LFAU_9"); "F3D" for BU-3DFE;
                 "" for the record of a folder that could not be walked (labels unknown).
    mesh         .wrl (BU-3DFE F3D) or .bnt path; None when missing; the folder itself for
                 the record of a folder that could not be walked.
    texture      texture image path; None when missing.
    landmarks    .bnd or .lm3 path; None when missing.
    landmarks2d  .lm2 path (Bosphorus) or None.
    extra        other companions by role: {"f2d": ..., "raw_wrl": ..., "pse": ...}.
    missing      roles whose file was expected but not found ("mesh", "texture", ...).
    root         the raw dataset root the walker started from (texture references may not
                 leave it, see datasets.resolve_texture); None for a record made by hand.
    problem      why the scan cannot be read ("<path>: <problem>": a folder that could not
                 be listed, a broken link, a file without read permission), else None. Such
                 a record becomes an error row, never a sample.
    """

    dataset: str
    scan_id: str
    subject: str
    expression: str | None
    intensity: int
    capture: str
    mesh: Path | None
    texture: Path | None
    landmarks: Path | None
    landmarks2d: Path | None = None
    sex: str | None = None
    ethnicity: str | None = None
    extra: dict = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    root: Path | None = None
    problem: str | None = None

    @property
    def labels_known(self) -> bool:
        """False for the record of a folder that could not be walked: it may hold any scan,
        so selections by expression or intensity keep it."""
        return not (self.problem is not None and self.capture == "")
