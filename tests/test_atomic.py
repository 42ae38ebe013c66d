"""Atomic writes and padding helpers (no TensorFlow)."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from inc_transformer_mt.atomic import atomic_write
from inc_transformer_mt.data.batching import pad_batch
from inc_transformer_mt.errors import UserError

pytestmark = pytest.mark.unit


def test_atomic_write_text_bytes_and_gzip(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    atomic_write(tmp_path / "a.txt", b"replaced")
    assert (tmp_path / "a.txt").read_bytes() == b"replaced"
    first = atomic_write(tmp_path / "b.gz", b"x" * 1000, gzip_level=9).read_bytes()
    assert gzip.decompress(first) == b"x" * 1000
    assert atomic_write(tmp_path / "b.gz", b"x" * 1000, gzip_level=9).read_bytes() == first  # deterministic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.gz"]  # no temporary files left


def test_atomic_write_uses_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_write_missing_directory(tmp_path):
    with pytest.raises(UserError, match="output directory .* does not exist"):
        atomic_write(tmp_path / "nope" / "a.txt", "x")


def test_pad_batch():
    batch = pad_batch([[5, 6, 1], [7, 1]])
    assert batch.dtype == np.int32
    assert batch.tolist() == [[5, 6, 1], [7, 1, 0]]


def test_atomic_write_replaces_a_symlinks_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"


def test_atomic_write_refuses_a_directory(tmp_path):
    path = tmp_path / "d"
    path.mkdir()
    with pytest.raises(UserError, match="output path is a directory"):
        atomic_write(path, "x")
    assert path.is_dir() and list(path.iterdir()) == []


def test_atomic_write_writes_through_a_fifo(tmp_path):
    """``-o >(gzip > x.gz)`` is a pipe: its reader gets the bytes, and the FIFO stays a FIFO."""
    import stat
    import threading

    path = tmp_path / "f"
    os.mkfifo(path)
    got = []
    reader = threading.Thread(target=lambda: got.append(path.read_bytes()))
    reader.start()
    atomic_write(path, "one\ntwo\n")
    reader.join(timeout=30)
    assert got == [b"one\ntwo\n"]
    assert stat.S_ISFIFO(os.stat(path).st_mode)


def test_atomic_write_writes_through_a_character_device(tmp_path):
    """A null device made here (never the system's /dev/null): written through, still a device afterwards."""
    import stat

    path = tmp_path / "null"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs root")
    atomic_write(path, "x" * 1000)
    assert stat.S_ISCHR(os.stat(path).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temp file either
