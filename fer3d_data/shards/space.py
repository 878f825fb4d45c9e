"""A full disk as a clean, resumable event for a shard being written.

Stage: the end of preprocessing (:class:`~fer3d_data.shards.ShardWriter`). HDF5 reports most
failed writes on a full disk through destructors whose errors are printed and ignored, and a
file it cannot flush makes the interpreter segfault at exit. So a writer checks free space
before each write and keeps a ballast file it frees when a write fails anyway (another
process filled the disk): HDF5 then has room to flush and close the file cleanly.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

# Free space kept beyond each write (HDF5 metadata, the error table, the flush at close);
# also the size of the ballast.
SPARE_BYTES = 1 << 20


class SpaceGuard:
    """Free-space checks and a ballast (``<path>.spare``) for one file being written."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.ballast = self.path.with_name(self.path.name + ".spare")

    def enospc(self) -> OSError:
        """The error every full-disk path raises: one line naming the file."""
        return OSError(errno.ENOSPC, "No space left on device", str(self.path))

    def reserve(self) -> None:
        """Allocate the ballast; OSError(ENOSPC) naming the file when even that does not fit."""
        try:
            with open(self.ballast, "wb") as fh:
                try:
                    os.posix_fallocate(fh.fileno(), 0, SPARE_BYTES)
                except (AttributeError, OSError) as e:  # no fallocate here: write the bytes
                    if getattr(e, "errno", None) == errno.ENOSPC:
                        raise
                    fh.write(bytes(SPARE_BYTES))
        except OSError as e:
            self.release()
            if e.errno == errno.ENOSPC:
                raise self.enospc() from e
            raise

    def release(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def free_bytes(self) -> float:
        try:
            st = os.statvfs(self.path.parent)
        except (OSError, AttributeError):  # no statvfs here: rely on the write itself failing
            return float("inf")
        return st.f_bavail * st.f_frsize

    def ensure(self, need: int) -> None:
        """OSError(ENOSPC) before writing when ``need`` bytes plus the spare would not fit."""
        if self.free_bytes() < need + SPARE_BYTES:
            raise self.enospc()

    def is_full(self, exc: BaseException, need: int) -> bool:
        """Whether a failed write is a full disk (h5py often says "filter" or "id" errors)."""
        return (getattr(exc, "errno", None) == errno.ENOSPC or "errno = 28" in str(exc)
                or self.free_bytes() < need + SPARE_BYTES)
