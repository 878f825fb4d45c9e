"""One record per raw scan, as the dataset walkers yield them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..schema import NO_FRAME


@dataclass(frozen=True)
class ScanRecord:
    """Where a scan's files are and what it shows.

    dataset      the adapter's name: "bu3dfe", "bosphorus", "folder".
    scan_id      the shard's sample_id: the file stem without the type suffix
                 ("F0001_AN01WH", "bs000_E_ANGER_0"), or the path in a labelled folder.
    subject      "F0001", "bs000".
    expression   a name of fer3d_data.schema.CLASS_NAMES, or None for a Bosphorus capture
                 that is no expression (action units, poses, occlusions) and for a scan
                 labelled otherwise.
    intensity    0-4 for BU-3DFE (neutral 0), schema.INTENSITY_UNGRADED for the others.
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
    label        the class the scan is trained as (a labels file's ``label``); given as
                 None it is the scan's ``expression``.
    sequence     id of the capture sequence the scan is a frame of; "" for a lone scan.
    frame        the frame number within ``sequence``; -1 for a lone scan.
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
    label: str | None = None
    sequence: str = ""
    frame: int = NO_FRAME

    def __post_init__(self):
        if self.label is None:  # a frozen dataclass sets its own fields this way
            object.__setattr__(self, "label", self.expression)

    @property
    def labels_known(self) -> bool:
        """False for the record of a folder that could not be walked: it may hold any scan,
        so selections by expression or intensity keep it."""
        return not (self.problem is not None and self.capture == "")
