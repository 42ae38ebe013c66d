"""Atomic file writes: a temporary file in the target's directory, then ``os.replace``."""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from pathlib import Path

from inc_transformer_mt.errors import UserError

__all__ = ["atomic_write"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _writable_target(path: Path) -> Path:
    """The file to replace: a symlink's target (so the link survives); a UserError when it is not a regular file."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise UserError(f"{path}: output path is {kind}; give a file name")
    return path


def atomic_write(path: str | Path, data: str | bytes, *, gzip_level: int | None = None) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` so that readers see the old file or the new one, never a part.

    With ``gzip_level`` the bytes are gzip-compressed deterministically (no name, mtime 0).

    A symlink is followed: its target is replaced and the link kept. Anything at ``path`` that is not a regular
    file (a directory, a FIFO, a device such as /dev/null) is refused rather than replaced.

    Raises:
        UserError: the target directory does not exist, or the path is not a regular file.
    """
    path = _writable_target(Path(path))
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{path}: output directory {parent} does not exist")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if gzip_level is not None:
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=gzip_level) as gz:
            gz.write(payload)
        payload = buffer.getvalue()
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
