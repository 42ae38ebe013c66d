"""Atomic file writes: a temporary file in the target's directory, then ``os.replace``."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tempfile
from pathlib import Path

from inc_transformer_mt.errors import UserError

__all__ = ["atomic_write", "check_output_path"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_stream(path: Path) -> bool:
    """A FIFO (``-o >(gzip > x.gz)`` is one) or a character device (/dev/null, /dev/stdout): written through."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _writable_target(path: Path) -> Path:
    """The file to write: a symlink's target (so the link survives); a UserError for a directory, a block device
    or a socket."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file() and not _is_stream(path):
        kind = "a directory" if path.is_dir() else "not a regular file, FIFO or character device (a block device or socket)"
        raise UserError(f"{path}: output path is {kind}; give a file name")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove_stale_temps(parent: Path, name: str) -> None:
    """Temporary files of ``name`` left by a writer that was killed (its pid is in the name and is gone)."""
    prefix = f".{name}."
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        rest = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
        pid, dash, _ = rest.partition("-")
        if dash and pid.isdigit() and rest.endswith(".tmp") and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def check_output_path(path: str | Path) -> Path:
    """The file :func:`atomic_write` would replace at ``path``, checked before any work is done: commands call
    this first, so that a bad ``-o`` fails in a second, not after the translation.

    Raises:
        UserError: the path is a directory, a FIFO or a device, or its directory does not exist.
    """
    path = _writable_target(Path(path))
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{path}: output directory {parent} does not exist")
    return path


def atomic_write(path: str | Path, data: str | bytes, *, gzip_level: int | None = None) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` so that readers see the old file or the new one, never a part.

    With ``gzip_level`` the bytes are gzip-compressed deterministically (no name, mtime 0).

    A symlink is followed: its target is replaced and the link kept. A FIFO or a character device (a pipe from
    ``-o >(...)``, /dev/null) is written through: never replaced, its reader gets the bytes (there is no atomicity
    to give a stream). A directory, a block device or a socket is refused.

    Raises:
        UserError: the target directory does not exist, or the path is a directory, block device or socket.
    """
    path = check_output_path(path)
    parent = path.parent
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if gzip_level is not None:
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=gzip_level) as gz:
            gz.write(payload)
        payload = buffer.getvalue()
    if _is_stream(path):
        with open(path, "wb") as stream:
            stream.write(payload)
        return path
    _remove_stale_temps(parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
