"""File access shared by the raw-format readers, and by every command reading a file a user
names (``--config``, ``@FILE`` lists: :func:`fer3d_data.clibase.read_user_file`): every
failure becomes a RawFormatError that names the file, and no read can hang or grow without
bound."""

from __future__ import annotations

import os
import stat
import time

from ..errors import RawFormatError

# Largest raw file a reader opens. Genuine files are ten times smaller or more (BU-3DFE F3D
# ~3 MB, Bosphorus .bnt ~6 MB, textures about 1 MB); the cap bounds the memory and time one
# input can claim (parsed arrays take up to ~20 bytes per byte of VRML text).
DEFAULT_MAX_BYTES = 64 * 2**20

# Longest numeric token accepted in a text format: a genuine value has under 20 characters.
MAX_NUMBER_CHARS = 64

# Seconds a whole read may take: a 64 MiB file reads in well under a second from a local
# disk and in ~6 s at 10 MB/s; a stalled network file system stops here.
DEFAULT_TIMEOUT_S = 60.0
_CHUNK = 4 * 2**20


def read_bytes(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
    """The whole file; only a readable, non-empty regular file of at most ``max_bytes``,
    read within ``timeout_s`` seconds.

    The file is opened non-blocking so a FIFO named like a scan cannot stall the open, then
    refused by its type before any read (a FIFO or ``/dev/urandom`` would never end). The
    time limit is checked between reads of 4 MiB; one read the system blocks in (a hung
    mount) is not interrupted.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise RawFormatError(path, f"cannot read file ({e.strerror or e})") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RawFormatError(path, f"not a regular file ({_file_kind(info.st_mode)})")
        if info.st_size > max_bytes:
            raise RawFormatError(path, f"{info.st_size} bytes, over the limit of {max_bytes} "
                                       "for this file (max_bytes)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = _read_within(f, info.st_size + 1, timeout_s, path)  # +1: still growing?
    except OSError as e:
        raise RawFormatError(path, f"cannot read file ({e.strerror or e})") from e
    finally:
        os.close(fd)
    if len(data) > info.st_size:
        raise RawFormatError(path, f"file grew while being read (over {info.st_size} bytes)")
    if not data:
        raise RawFormatError(path, "empty file")
    return data


def _read_within(f, size: int, timeout_s: float, path) -> bytes:
    """Up to ``size`` bytes of ``f``, RawFormatError once reading has taken ``timeout_s``."""
    deadline, parts, left = time.monotonic() + timeout_s, [], size
    while left > 0:
        part = f.read(min(_CHUNK, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
        if left > 0 and time.monotonic() > deadline:
            raise RawFormatError(path, f"reading took over {timeout_s:g} s (a stalled file "
                                       "system?); stopped")
    return b"".join(parts)


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def read_text_lines(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[str]:
    """The file's lines without line ends (LF, CRLF or CR); a binary file is refused.

    UTF-8 is tried first; Latin-1 accepts any other byte so a stray accent in a name
    does not lose the whole file.
    """
    data = read_bytes(path, max_bytes=max_bytes)
    if b"\x00" in data:
        raise RawFormatError(path, "binary file (NUL bytes) where text was expected")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.splitlines()


def decode_name(raw: bytes) -> str:
    """A file name stored inside a raw file, as text."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
