"""File access shared by the raw-format readers: every failure becomes a RawFormatError
that names the file."""

from __future__ import annotations

import os

from ..errors import RawFormatError


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file; a missing, unreadable or empty file is a RawFormatError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RawFormatError(path, f"cannot read file ({e.strerror or e})") from e
    if not data:
        raise RawFormatError(path, "empty file")
    return data


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The file's lines without line ends (LF, CRLF or CR); a binary file is refused.

    UTF-8 is tried first; Latin-1 accepts any other byte so a stray accent in a name
    does not lose the whole file.
    """
    data = read_bytes(path)
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
